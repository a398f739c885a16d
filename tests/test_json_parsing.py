"""JSON bodies too deeply nested, or with numbers too long to read, are a 400, never a 500.

Python's decoder gives up on such input with a RecursionError (thousands of nested arrays)
or a ValueError (an integer of more than 4,300 digits); every JSON endpoint answers them as
a parse error in its own shape, the unauthenticated login endpoint included.
"""

import pytest
from django.test import AsyncClient, Client

from accounts.models import User
from inference.models import ModelVersion
from tests.inference.websocket import access_token

DEEP = "[" * 5000 + "]" * 5000
LONG_INTEGER = '{"username": "alice", "password": ' + "9" * 5000 + "}"


@pytest.mark.django_db
@pytest.mark.parametrize("body", [DEEP, LONG_INTEGER], ids=["nested-5000-deep", "integer-5000-digits"])
def test_the_token_endpoint_answers_unreadable_json_with_400(body: str) -> None:
    response = Client(raise_request_exception=False).post(
        "/api/auth/token/", body, content_type="application/json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith("JSON parse error")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("body", [DEEP, LONG_INTEGER], ids=["nested-5000-deep", "integer-5000-digits"])
async def test_chat_completions_answers_unreadable_json_with_openai_400(
    bob: User, demo_version: ModelVersion, body: str
) -> None:
    response = await AsyncClient(raise_request_exception=False).post(
        "/v1/chat/completions",
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {await access_token(bob)}"},
    )
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "parse_error"
    assert error["message"].startswith("JSON parse error")
