"""Small helpers for the SCIM tests: a client with a SCIM token, request bodies, and reads."""

import json
from typing import Any

from rest_framework.test import APIClient

from accounts.models import User
from audit.models import AuditEvent
from scim.documents import GROUP_SCHEMA, PATCH_OP_SCHEMA, USER_SCHEMA
from scim.models import ScimToken
from scim.services import scim_token_create

SCIM = "application/scim+json"
USERS = "/scim/v2/Users"
GROUPS = "/scim/v2/Groups"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


class ScimClient:
    """An identity provider's SCIM client: JSON bodies sent as application/scim+json."""

    def __init__(self, raw_token: str | None) -> None:
        self.http = APIClient()
        if raw_token is not None:
            self.http.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_token}")

    def _send(self, method: str, path: str, body: Any = None) -> Any:
        call = getattr(self.http, method)
        if body is None:
            return call(path)
        return call(path, data=json.dumps(body), content_type=SCIM)

    def get(self, path: str) -> Any:
        return self.http.get(path)

    def post(self, path: str, body: Any) -> Any:
        return self._send("post", path, body)

    def put(self, path: str, body: Any) -> Any:
        return self._send("put", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self._send("patch", path, body)

    def delete(self, path: str) -> Any:
        return self.http.delete(path)

    def raw(self, method: str, path: str, data: str, content_type: str = SCIM) -> Any:
        return getattr(self.http, method)(path, data=data, content_type=content_type)


def token_new(name: str = "okta", created_by: User | None = None) -> tuple[ScimToken, str]:
    return scim_token_create(name=name, created_by=created_by)


def user_body(user_name: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "name": {"givenName": "Dana", "familyName": "Scully"},
        "emails": [
            {"value": f"{user_name.split('@', maxsplit=1)[0]}@example.com", "type": "work", "primary": True}
        ],
        "active": True,
    }
    body.update(extra)
    return body


def group_body(display_name: str, members: list[str] = (), **extra: Any) -> dict[str, Any]:  # type: ignore[assignment]
    body: dict[str, Any] = {
        "schemas": [GROUP_SCHEMA],
        "displayName": display_name,
        "members": [{"value": member} for member in members],
    }
    body.update(extra)
    return body


def patch_body(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP_SCHEMA], "Operations": list(operations)}


def scim_error(response: Any, status: int, scim_type: str | None = None) -> str:
    """Assert `response` is a SCIM error with `status` (and `scim_type`); returns its detail."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith(SCIM)
    body = response.json()
    assert body["schemas"] == [ERROR_SCHEMA]
    assert body["status"] == str(status)
    assert body.get("scimType") == scim_type, body
    assert body["detail"]
    return str(body["detail"])


def events(action: str, *, about: User | None = None) -> list[AuditEvent]:
    """The audit records of `action` (about the user `about`, when given), oldest first."""
    found = AuditEvent.objects.filter(action=action)
    if about is not None:
        found = found.filter(target_type="accounts.user", target_id=str(about.pk))
    return list(found.order_by("id"))
