"""Production refuses deploy/'s placeholder secrets and short keys (gatehouse.checks).

Settings refuse the signing keys as they load (tests/test_settings.py runs that in a fresh
process); the system check repeats it for `check --deploy` and covers the other secrets.
"""

from typing import Any

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from gatehouse.checks import unsafe_defaults_check

_GOOD = {"SECRET_KEY": "s" * 60, "JWT_SIGNING_KEY": "j" * 60, "API_KEY_PEPPER": "p" * 40}


@pytest.fixture
def production(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    settings.DEBUG = False
    for name, value in _GOOD.items():
        setattr(settings, name, value)
    for name in ("GATEHOUSE_ADMIN_PASSWORD", "GATEHOUSE_METRICS_TOKEN", "GATEHOUSE_AUDIT_SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)
    settings.GATEHOUSE_METRICS_TOKEN = ""
    settings.GATEHOUSE_AUDIT_SIGNING_KEY = ""
    return settings


def _ours(messages: list[checks.CheckMessage]) -> list[checks.CheckMessage]:
    return [message for message in messages if str(message.id).startswith("gatehouse.")]


def test_real_secrets_pass(production: Any) -> None:
    assert _ours(checks.run_checks(tags=[checks.Tags.security])) == []


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("JWT_SIGNING_KEY", "change-me-to-another-50-random-characters", "placeholder"),
        ("API_KEY_PEPPER", "change-me-to-a-third-random-value", "placeholder"),
        ("JWT_SIGNING_KEY", "x" * 20, "at least 32 characters"),
        ("API_KEY_PEPPER", "pepper", "at least 32 characters"),
    ],
)
def test_placeholder_or_short_keys_are_errors(production: Any, name: str, value: str, words: str) -> None:
    setattr(production, name, value)
    (error,) = _ours(checks.run_checks(tags=[checks.Tags.security]))
    assert error.level == checks.ERROR
    assert error.id == "gatehouse.E001"
    assert name in error.msg
    assert words in error.msg


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEHOUSE_ADMIN_PASSWORD", "change-me-admin-password"),
        ("GATEHOUSE_METRICS_TOKEN", "change-me-metrics-token"),
        ("GATEHOUSE_AUDIT_SIGNING_KEY", "change-me-base64-32-bytes"),
    ],
)
def test_other_shipped_placeholders_are_errors(
    production: Any, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    (error,) = _ours(unsafe_defaults_check())
    assert error.id == "gatehouse.E002"
    assert name in error.msg


def test_a_weak_admin_password_is_an_error(production: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEHOUSE_ADMIN_PASSWORD", "password")
    (error,) = _ours(unsafe_defaults_check())
    assert error.id == "gatehouse.E003"
    assert "too common" in error.msg


def test_check_deploy_fails_on_a_placeholder(production: Any) -> None:
    production.JWT_SIGNING_KEY = "change-me-to-another-50-random-characters"
    with pytest.raises(SystemCheckError, match="JWT_SIGNING_KEY is still the placeholder"):
        call_command("check", "--deploy")


def test_development_is_not_held_to_it(settings: Any) -> None:
    settings.DEBUG = True
    settings.JWT_SIGNING_KEY = "short"
    assert unsafe_defaults_check() == []
