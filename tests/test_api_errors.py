"""The API answers every refusal as JSON in its own shape, and its schema says so."""

import pytest
from django.db import OperationalError
from rest_framework.test import APIClient

from accounts.models import User
from tests.accounts.helpers import bearer_client, login

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/keys/not-a-number/", {"detail": "There is no API endpoint at /api/keys/not-a-number/."}),
        ("/api/keys", {"detail": "There is no API endpoint at /api/keys. Did you mean /api/keys/ ?"}),
        (
            "/v1/no-such-thing",
            {
                "error": {
                    "message": "There is no API endpoint at /v1/no-such-thing.",
                    "type": "not_found_error",
                    "code": "not_found",
                }
            },
        ),
    ],
)
def test_an_unknown_api_path_is_a_json_404(path: str, body: dict[str, object]) -> None:
    for method in ("get", "post", "delete"):
        # A cookie makes Django's CSRF check apply to a plain view: this one is exempt.
        client = APIClient()
        client.cookies["sessionid"] = "not-a-session"
        response = getattr(client, method)(path)
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert response.json() == body


def test_a_page_outside_the_api_is_still_a_page() -> None:
    response = APIClient().get("/no-such-page/")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


def test_a_database_error_is_a_503_that_says_nothing_was_saved(
    bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = bearer_client(login(bob).access)

    def unreachable(**kwargs: object) -> None:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("accounts.api.views.api_key_create", unreachable)
    response = client.post("/api/keys/", {"name": "k", "scopes": ["chat"]}, format="json")
    assert response.status_code == 503
    assert response.json() == {
        "detail": "The database could not be reached, so nothing was saved; try again shortly."
    }


def test_the_schema_documents_each_operations_refusals() -> None:
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    keys_delete = schema["paths"]["/api/keys/{key_id}/"]["delete"]["responses"]
    assert {"204", "401", "403", "404", "503"} <= set(keys_delete)
    assert keys_delete["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ApiError"
    }
    chat = schema["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert {"200", "400", "401", "404", "429", "503"} <= set(chat)
    assert chat["429"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OpenAIError"
    }
    assert "409" in schema["paths"]["/api/compliance/exports/"]["post"]["responses"]
