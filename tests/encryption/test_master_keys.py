"""Master keys: parsed with errors a person can act on, generated once where unset, checked."""

import stat
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from encryption.checks import master_keys_check, master_keys_deploy_check
from encryption.master_keys import master_keys, master_keys_parse
from gatehouse.checks import unsafe_defaults_check
from tests.encryption.helpers import master_key_entry


def test_the_first_key_is_the_primary() -> None:
    keys = master_keys_parse(f"{master_key_entry('new')}, {master_key_entry('old')}")
    assert (keys.primary, list(keys.keys)) == ("new", ["new", "old"])


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "holds no key"),
        ("no-separator", "entry 1 must be `<id>:<base64"),
        ("a:c2hvcnQ=", "exactly 32 random bytes"),
        ("a:not base64!", "exactly 32 random bytes"),
        ("bad id:" + "A" * 44, "entry 1 must be"),
    ],
)
def test_a_malformed_setting_says_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=words):
        master_keys_parse(text)


def test_a_key_id_twice_is_refused() -> None:
    entry = master_key_entry("a")
    with pytest.raises(ImproperlyConfigured, match="appears twice"):
        master_keys_parse(f"{entry},{entry}")


def test_unset_a_key_is_generated_once_readable_by_its_owner_only(settings: Any, tmp_path: Path) -> None:
    settings.GATEHOUSE_ENCRYPTION_KEYS = ""
    settings.GATEHOUSE_ENCRYPTION_KEY_FILE = tmp_path / "master-key"
    first = master_keys()
    assert stat.S_IMODE((tmp_path / "master-key").stat().st_mode) == 0o600
    settings.GATEHOUSE_ENCRYPTION_KEY_FILE = tmp_path / "master-key"  # a fresh process reads it back
    assert master_keys_parse((tmp_path / "master-key").read_text()) == first


@pytest.mark.django_db
def test_checks_refuse_a_malformed_or_placeholder_setting_and_warn_on_a_generated_key(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.GATEHOUSE_ENCRYPTION_KEYS = ""
    assert [m.id for m in master_keys_deploy_check()] == ["gatehouse.W011"]
    settings.GATEHOUSE_ENCRYPTION_KEYS = "main:change-me-base64-32-bytes"
    assert [m.id for m in master_keys_check()] == ["gatehouse.E010"]
    monkeypatch.setenv("GATEHOUSE_ENCRYPTION_KEYS", "main:change-me-base64-32-bytes")
    assert any("GATEHOUSE_ENCRYPTION_KEYS is still the placeholder" in m.msg for m in unsafe_defaults_check())
