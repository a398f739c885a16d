"""Sessions end GATEHOUSE_SESSION_MAX_AGE after their login, however often they are used."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import User
from tests.accounts.helpers import bearer_client, login

pytestmark = pytest.mark.django_db

MAX_AGE = 3600
PROTECTED = "/api/keys/"


@pytest.fixture(autouse=True)
def _one_hour_sessions(settings: Any) -> None:
    settings.GATEHOUSE_SESSION_MAX_AGE = MAX_AGE


@contextmanager
def _later(seconds: float) -> Iterator[None]:
    """Move Django's clock forward (simplejwt's own clock, which checks expiry, stays put)."""
    moved = timezone.now() + timedelta(seconds=seconds)
    with mock.patch("django.utils.timezone.now", return_value=moved):
        yield


def _refresh(raw: str) -> Any:
    return APIClient().post("/api/auth/token/refresh/", {"refresh": raw}, format="json")


def test_refreshing_does_not_stretch_a_session_past_its_lifetime(bob: User) -> None:
    pair = login(bob)
    with _later(MAX_AGE - 60):
        response = _refresh(pair.refresh)
        assert response.status_code == 200
        fresh = response.json()
    with _later(MAX_AGE + 60):
        response = _refresh(fresh["refresh"])
        assert response.status_code == 401
        assert response.json()["detail"] == "This session has ended; log in again."
        # Its access tokens die with it, the freshest included.
        assert bearer_client(fresh["access"]).get(PROTECTED).status_code == 401
        # A new login is a new session.
        assert bearer_client(login(bob).access).get(PROTECTED).status_code == 200


def test_a_console_session_is_logged_out_at_the_end_of_its_lifetime(alice: User) -> None:
    console = Client()
    console.force_login(alice)
    with _later(MAX_AGE - 60):
        assert console.get("/admin/").status_code == 200
    with _later(MAX_AGE + 60):
        response = console.get("/admin/")
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]
    # Logged out for good, not only while the clock was ahead.
    assert console.get("/admin/").status_code == 302


def test_a_console_session_without_a_login_time_is_not_trusted(alice: User) -> None:
    from accounts.session_lifetime import SESSION_LOGIN_AT

    console = Client()
    console.force_login(alice)
    session = console.session
    del session[SESSION_LOGIN_AT]
    session.save()
    assert console.get("/admin/").status_code == 302
