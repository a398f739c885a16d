"""Fixtures for the SCIM tests: a SCIM token and a client that presents it."""

import pytest

from accounts.models import User
from scim.models import ScimToken
from tests.scim.helpers import ScimClient, token_new


@pytest.fixture
def scim_token(alice: User) -> tuple[ScimToken, str]:
    """Okta's token, made by alice (the admin): the row and the token itself."""
    return token_new("okta", created_by=alice)


@pytest.fixture
def scim(scim_token: tuple[ScimToken, str]) -> ScimClient:
    return ScimClient(scim_token[1])
