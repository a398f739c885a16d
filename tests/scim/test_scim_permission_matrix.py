"""Every SCIM route against every kind of caller: only the SCIM token gets in.

The API's matrix (tests/permission_matrix.py) covers /api/ and /v1/; this one covers
/scim/v2/, and its guard fails when a route there has no row here. Callers: anonymous, each
persona's JWT (alice the admin, bob and dave members, carol the auditor), an admin's API key
with every scope, an admin's console session, and the SCIM token.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from accounts.models import ApiKey, User
from accounts.roles import Role
from accounts.services import api_key_create, user_create
from scim.models import ScimToken
from scim.payloads import GroupAttributes, UserAttributes
from scim.services import scim_group_create, scim_user_create
from tests.accounts.helpers import bearer_client, login
from tests.conftest import PASSWORD
from tests.scim.helpers import ScimClient, group_body, patch_body, token_new, user_body

CALLERS = ("anonymous", "alice", "bob", "dave", "carol", "api_key", "console", "scim_token")


@dataclass
class World:
    users: dict[str, User]
    api_key: str
    token: ScimToken
    raw_token: str

    def user_id(self) -> str:
        return str(scim_user_create(attributes=UserAttributes(user_name="matrix-user"), token=self.token).id)

    def group_id(self) -> str:
        link = scim_group_create(attributes=GroupAttributes(display_name="Matrix Group"), token=self.token)
        return str(link.id)


@pytest.fixture
def world(alice: User, bob: User, carol: User) -> World:
    dave = user_create(username="dave", password=PASSWORD, roles=[Role.MEMBER])
    _, api_key = api_key_create(user=alice, name="all", scopes=ApiKey.Scope.values, actor=alice)
    token, raw = token_new("okta", alice)
    return World({"alice": alice, "bob": bob, "carol": carol, "dave": dave}, api_key, token, raw)


@dataclass(frozen=True)
class Route:
    method: str
    path: Callable[[World], str]
    status: int  # what the SCIM token gets; every other caller gets 401
    body: Callable[[World], Any] | None = None


def _fixed(path: str) -> Callable[[World], str]:
    return lambda world: path


ROUTES: dict[str, Route] = {
    "GET /scim/v2/Users": Route("get", _fixed("/scim/v2/Users"), 200),
    "POST /scim/v2/Users": Route("post", _fixed("/scim/v2/Users"), 201, lambda world: user_body("new-user")),
    "GET /scim/v2/Users/<str:scim_id>": Route("get", lambda w: f"/scim/v2/Users/{w.user_id()}", 200),
    "PUT /scim/v2/Users/<str:scim_id>": Route(
        "put", lambda w: f"/scim/v2/Users/{w.user_id()}", 200, lambda world: user_body("matrix-user")
    ),
    "PATCH /scim/v2/Users/<str:scim_id>": Route(
        "patch",
        lambda w: f"/scim/v2/Users/{w.user_id()}",
        200,
        lambda world: patch_body({"op": "replace", "path": "active", "value": False}),
    ),
    "DELETE /scim/v2/Users/<str:scim_id>": Route("delete", lambda w: f"/scim/v2/Users/{w.user_id()}", 204),
    "GET /scim/v2/Groups": Route("get", _fixed("/scim/v2/Groups"), 200),
    "POST /scim/v2/Groups": Route(
        "post", _fixed("/scim/v2/Groups"), 201, lambda world: group_body("New Group")
    ),
    "GET /scim/v2/Groups/<str:scim_id>": Route("get", lambda w: f"/scim/v2/Groups/{w.group_id()}", 200),
    "PUT /scim/v2/Groups/<str:scim_id>": Route(
        "put", lambda w: f"/scim/v2/Groups/{w.group_id()}", 200, lambda world: group_body("Renamed")
    ),
    "PATCH /scim/v2/Groups/<str:scim_id>": Route(
        "patch",
        lambda w: f"/scim/v2/Groups/{w.group_id()}",
        200,
        lambda world: patch_body({"op": "replace", "path": "displayName", "value": "Renamed"}),
    ),
    "DELETE /scim/v2/Groups/<str:scim_id>": Route("delete", lambda w: f"/scim/v2/Groups/{w.group_id()}", 204),
    "GET /scim/v2/ServiceProviderConfig": Route("get", _fixed("/scim/v2/ServiceProviderConfig"), 200),
    "GET /scim/v2/ResourceTypes": Route("get", _fixed("/scim/v2/ResourceTypes"), 200),
    "GET /scim/v2/Schemas": Route("get", _fixed("/scim/v2/Schemas"), 200),
    **{
        f"{method.upper()} /scim/v2/^(?P<rest>.*)$": Route(
            method, _fixed("/scim/v2/Nothing/here"), 404, lambda world: patch_body()
        )
        for method in ("get", "post", "put", "patch", "delete")
    },
}


def _client(world: World, caller: str) -> Any:
    if caller == "anonymous":
        return ScimClient(None)
    if caller == "scim_token":
        return ScimClient(world.raw_token)
    if caller == "api_key":
        client = ScimClient(None)
        client.http = bearer_client(world.api_key)
        return client
    if caller == "console":
        client = ScimClient(None)
        client.http = Client()  # type: ignore[assignment]
        client.http.force_login(world.users["alice"])
        return client
    client = ScimClient(None)
    client.http = bearer_client(login(world.users[caller]).access)
    return client


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", ROUTES)
def test_scim_permission_matrix(world: World, route: str, caller: str) -> None:
    spec = ROUTES[route]
    client = _client(world, caller)
    path = spec.path(world)
    body = spec.body(world) if spec.body is not None and spec.method != "get" else None
    response = (
        getattr(client, spec.method)(path, body)
        if spec.method in ("post", "put", "patch")
        else getattr(client, spec.method)(path)
    )
    expected = spec.status if caller == "scim_token" else 401
    assert response.status_code == expected, (caller, response.content[:300])
    if expected == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]


def _scim_routes() -> set[str]:
    """'METHOD /path' for every view method under /scim/v2/."""
    routes: set[str] = set()

    def walk(patterns: list[Any], prefix: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                path = "/" + prefix + str(entry.pattern)
                if not path.startswith("/scim/"):
                    continue
                view_class = getattr(entry.callback, "cls", None)
                methods = [m for m in ("get", "post", "put", "patch", "delete") if hasattr(view_class, m)]
                routes.update(f"{method.upper()} {path}" for method in methods)

    walk(get_resolver().url_patterns, "")
    return routes


def test_every_scim_route_is_in_the_matrix() -> None:
    routes = _scim_routes()
    assert routes, "no SCIM routes found"
    assert not routes - set(ROUTES), f"SCIM routes without a matrix row: {sorted(routes - set(ROUTES))}"
    assert not set(ROUTES) - routes, f"matrix rows for routes that are gone: {sorted(set(ROUTES) - routes)}"
