"""Small helpers for identity tests."""

import time
from types import SimpleNamespace

import pytest
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import TokenPair, auth_tokens_obtain
from tests.conftest import PASSWORD


def login(user: User) -> TokenPair:
    return auth_tokens_obtain(username=user.get_username(), password=PASSWORD, client_ip="127.0.0.1")


def bearer_client(credential: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {credential}")
    return client


def quota_counter_used(user: User, dimension: str) -> int:
    """What the user's one policy counter of `dimension` ("requests", "tokens", "streams") holds."""
    from accounts.quotas.plan import quota_plan_for
    from accounts.services.quotas import quota_ledger

    (limit,) = getattr(quota_plan_for(user=user, api_key=None), dimension)
    return quota_ledger().used(key=limit.spec.key)


class AuthenticatorClock:
    """The clock TOTP devices read, moved on one time step per code.

    A code is good once per time step, so a test that uses several in a row asks for each
    at the next step, as a person waiting for their app's next code would. Only the TOTP
    models' clock is moved.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = 0
        monkeypatch.setattr(
            "django_otp.plugins.otp_totp.models.time", SimpleNamespace(time=lambda: time.time() + self.offset)
        )

    def code(self, user: User, *, confirmed: bool = True) -> str:
        """The code `user`'s (newest, confirmed or pending) authenticator shows at the next step."""
        device = TOTPDevice.objects.filter(user=user, confirmed=confirmed).latest("pk")
        self.offset += device.step
        totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
        totp.time = time.time() + self.offset
        return f"{totp.token():0{device.digits}d}"
