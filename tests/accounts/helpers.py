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
