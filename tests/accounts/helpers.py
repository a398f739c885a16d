"""Small helpers for identity tests."""

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
