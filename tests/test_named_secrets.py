"""Secrets named by stored rows: only names under a family's prefix are ever read
(`gatehouse.named_secrets`), for both families (upstream credentials, webhook signing keys)."""

import pytest

from gatehouse.named_secrets import NamedSecretRefused, SecretFamily
from inference.upstream_credentials import UpstreamCredentialRefused, upstream_credential_read
from spend.webhook_secrets import WebhookSecretRefused, webhook_secret_read

FAMILY = SecretFamily(prefix="GATEHOUSE_TESTFAMILY_", what="a test secret")


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEHOUSE_TESTFAMILY_ONE", "first")
    monkeypatch.setenv("GATEHOUSE_TESTFAMILY_EMPTY", "")
    monkeypatch.setenv("GATEHOUSE_UPSTREAM_TESTVLLM", "sk-upstream")
    monkeypatch.setenv("GATEHOUSE_WEBHOOK_TESTHOOK", "whsec")
    monkeypatch.setenv("SECRET_KEY", "the server's own")


@pytest.mark.parametrize(
    "name",
    [
        "SECRET_KEY",
        "GATEHOUSE_TESTFAMILY_",  # the prefix alone
        "gatehouse_testfamily_one",  # not capitals
        "GATEHOUSE_TESTFAMILY_ONE\n",  # a trailing newline a `$` would let through
        "X_GATEHOUSE_TESTFAMILY_ONE",  # the prefix not at the start
        "GATEHOUSE_TESTFAMILY_ONE/../SECRET_KEY",
    ],
)
def test_a_name_outside_the_family_is_refused_and_never_read(name: str) -> None:
    with pytest.raises(NamedSecretRefused, match="may not be used as a test secret"):
        FAMILY.read(name=name)


def test_a_name_in_the_family_is_read_and_listed_never_its_value() -> None:
    assert FAMILY.read(name="GATEHOUSE_TESTFAMILY_ONE") == "first"
    assert FAMILY.read(name="GATEHOUSE_TESTFAMILY_EMPTY") is None
    assert FAMILY.read(name="GATEHOUSE_TESTFAMILY_UNSET") is None
    assert FAMILY.names() == ["GATEHOUSE_TESTFAMILY_ONE"]


def test_a_prefix_is_taken_literally() -> None:
    dotted = SecretFamily(prefix="A.B_", what="a dotted secret")
    with pytest.raises(NamedSecretRefused):
        dotted.check(name="AXB_ONE")
    dotted.check(name="A.B_ONE")


def test_each_family_reads_only_its_own_names() -> None:
    assert upstream_credential_read(name="GATEHOUSE_UPSTREAM_TESTVLLM") == "sk-upstream"
    assert webhook_secret_read(name="GATEHOUSE_WEBHOOK_TESTHOOK") == b"whsec"
    with pytest.raises(UpstreamCredentialRefused):
        upstream_credential_read(name="GATEHOUSE_WEBHOOK_TESTHOOK")
    with pytest.raises(WebhookSecretRefused):
        webhook_secret_read(name="GATEHOUSE_UPSTREAM_TESTVLLM")
    with pytest.raises(WebhookSecretRefused, match="is not set"):
        webhook_secret_read(name="GATEHOUSE_WEBHOOK_UNSET")
