"""The bootstrap admin's password meets the same rules as everyone's (AUTH_PASSWORD_VALIDATORS)."""

from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import User
from accounts.services import admin_ensure


@pytest.mark.parametrize("weak", ["password", "12345678", "short1", "admin"])
def test_a_weak_admin_password_is_refused(db: None, weak: str) -> None:
    with pytest.raises(ValidationError) as refused:
        admin_ensure(username="admin", password=weak)
    assert "GATEHOUSE_ADMIN_PASSWORD" in str(refused.value)
    assert not User.objects.filter(username="admin").exists()


def test_a_strong_admin_password_is_taken(db: None) -> None:
    ensured = admin_ensure(username="admin", password="violet-harbour-ledger-91")
    assert ensured.created
    assert ensured.generated_password is None
    assert ensured.user.check_password("violet-harbour-ledger-91")


def test_a_generated_password_passes_the_rules(db: None) -> None:
    ensured = admin_ensure(username="admin", password=None)
    assert ensured.generated_password
    assert ensured.user.check_password(ensured.generated_password)


def test_bootstrap_says_why_it_refuses(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEHOUSE_ADMIN_PASSWORD", "password")
    with pytest.raises(CommandError, match=r"GATEHOUSE_ADMIN_PASSWORD.*too common"):
        call_command("bootstrap", stdout=StringIO())
