"""`GET /v1/models` and `/v1/models/{model}` with a bearer credential are answered before
Django (`inference.chat.models_http`): the same answers as the DRF views, for every caller."""

from typing import Any

import httpx
import pytest
from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from accounts.models import ApiKey, User
from accounts.roles import Role
from accounts.services import user_create
from accounts.services.api_keys import api_key_create, api_key_revoke
from gatehouse.asgi import application
from inference.chat.models_http import model_not_found_message
from inference.models import Model
from inference.services import model_access_grant, model_access_revoke, model_register
from tests.accounts.helpers import login
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

PATHS = ("/v1/models", "/v1/models/open-model", "/v1/models/closed-model", "/v1/models/no-such-model")


@pytest.fixture
def dave(db: None) -> User:
    """A member with no grants."""
    return user_create(username="dave", password=PASSWORD, roles=[Role.MEMBER])


@pytest.fixture
def models(alice: User, bob: User) -> dict[str, Model]:
    """An open model, one granted to bob only, one to nobody."""
    registered = {
        "open": model_register(name="open-model", open_to_all=True, actor=alice),
        "closed": model_register(name="closed-model", actor=alice),
        "team": model_register(name="team-model", actor=alice),
    }
    model_access_grant(model=registered["closed"], grantee=bob, actor=alice)
    return registered


def _key(user: User, scopes: tuple[str, ...], models: tuple[str, ...] = ()) -> str:
    return api_key_create(user=user, name="models", scopes=scopes, models=models, actor=user)[1]


async def _asgi_get(path: str, credential: str, **headers: str) -> httpx.Response:
    """Through the whole ASGI application, as a server would call it."""
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        return await client.get(path, headers={"Authorization": f"Bearer {credential}", **headers})


def _django_get(path: str, credential: str) -> tuple[int, Any]:
    """Through Django and the DRF view."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {credential}")
    response = client.get(path)
    return response.status_code, response.json()


async def test_every_caller_gets_the_answers_the_drf_views_give(
    alice: User, bob: User, dave: User, models: dict[str, Model]
) -> None:
    credentials = await database_sync_to_async(
        lambda: {
            "alice's token": login(alice).access,
            "bob's token": login(bob).access,
            "dave's token": login(dave).access,
            "bob's key": _key(bob, ("models:read",)),
            "bob's key for the open model only": _key(bob, ("models:read",), ("open-model",)),
            "bob's chat-only key": _key(bob, ("chat",)),
            "a made-up key": "gh_not-a-real-key",
        }
    )()
    for who, credential in credentials.items():
        for path in PATHS:
            answer = await _asgi_get(path, credential)
            # DRF's views always say which methods they allow; the door before Django does not.
            assert "allow" not in answer.headers, (who, path)
            assert answer.headers["content-type"] == "application/json"
            assert answer.headers["x-request-id"]
            expected = await database_sync_to_async(_django_get)(path, credential)
            assert (answer.status_code, answer.json()) == expected, (who, path)


async def test_each_caller_sees_only_the_models_they_may_use(
    alice: User, bob: User, dave: User, models: dict[str, Model]
) -> None:
    bobs, daves, alices, limited = await database_sync_to_async(
        lambda: (
            login(bob).access,
            login(dave).access,
            login(alice).access,
            _key(bob, ("models:read",), ("open-model",)),
        )
    )()

    async def names(credential: str) -> set[str]:
        answer = await _asgi_get("/v1/models", credential)
        assert answer.status_code == 200, answer.text
        assert answer.json()["object"] == "list"
        return {entry["id"] for entry in answer.json()["data"]}

    assert await names(bobs) == {"open-model", "closed-model"}
    assert await names(daves) == {"open-model"}
    assert await names(alices) == {"open-model", "closed-model", "team-model"}
    assert await names(limited) == {"open-model"}
    entry = (await _asgi_get("/v1/models/closed-model", bobs)).json()
    assert entry == {
        "id": "closed-model",
        "object": "model",
        "created": int(models["closed"].created_at.timestamp()),
        "owned_by": "gatehouse",
    }
    # Another's model and no model at all read the same: nothing to probe.
    hidden, missing = (
        await _asgi_get("/v1/models/closed-model", daves),
        await _asgi_get("/v1/models/no-such-model", daves),
    )
    assert (hidden.status_code, missing.status_code) == (404, 404)
    assert hidden.json()["error"]["code"] == missing.json()["error"]["code"] == "not_found"
    assert hidden.json()["error"]["message"] == model_not_found_message("closed-model")
    assert missing.json()["error"]["message"] == model_not_found_message("no-such-model")


async def test_refusals_are_openai_errors_with_their_status(bob: User, models: dict[str, Model]) -> None:
    chat_only = await database_sync_to_async(_key)(bob, ("chat",))
    refused = await _asgi_get("/v1/models", chat_only)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    unknown = await _asgi_get("/v1/models", "gh_not-a-real-key")
    assert unknown.status_code == 401
    assert unknown.headers["www-authenticate"] == 'Bearer realm="api"'
    empty = await _asgi_get("/v1/models", "")
    assert empty.status_code == 401
    bad_host = await _asgi_get("/v1/models", chat_only, Host="evil.example")
    assert bad_host.status_code == 400
    assert bad_host.json()["error"]["code"] == "bad_host"


async def test_a_revoked_key_is_refused_on_its_next_request(bob: User, models: dict[str, Model]) -> None:
    key = await database_sync_to_async(_key)(bob, ("models:read",))
    assert (await _asgi_get("/v1/models", key)).status_code == 200  # its caller is now cached
    await database_sync_to_async(
        lambda: api_key_revoke(api_key=ApiKey.objects.get(user=bob, name="models"), actor=bob)
    )()
    assert (await _asgi_get("/v1/models", key)).status_code == 401


async def test_a_browser_asking_for_html_and_other_paths_go_to_django(
    bob: User, models: dict[str, Model]
) -> None:
    key = await database_sync_to_async(_key)(bob, ("models:read",))
    html = await _asgi_get("/v1/models", key, Accept="text/html")
    assert html.status_code == 200
    assert "allow" in html.headers  # DRF's view answered
    # A slash in the name is no model's: Django's resolver answers (404, OpenAI's shape).
    nested = await _asgi_get("/v1/models/open-model/extra", key)
    assert nested.status_code == 404
    assert nested.json()["error"]["code"] == "not_found"


async def test_a_grant_given_or_taken_shows_in_the_next_list(
    alice: User, bob: User, models: dict[str, Model]
) -> None:
    key = await database_sync_to_async(_key)(bob, ("models:read",))

    async def names() -> set[str]:
        return {entry["id"] for entry in (await _asgi_get("/v1/models", key)).json()["data"]}

    assert await names() == {"open-model", "closed-model"}  # now held in this process's cache
    assert (await _asgi_get("/v1/models/team-model", key)).status_code == 404
    await database_sync_to_async(model_access_grant)(model=models["team"], grantee=bob, actor=alice)
    assert await names() == {"open-model", "closed-model", "team-model"}
    assert (await _asgi_get("/v1/models/team-model", key)).status_code == 200
    await database_sync_to_async(model_access_revoke)(model=models["closed"], grantee=bob, actor=alice)
    assert await names() == {"open-model", "team-model"}
    assert (await _asgi_get("/v1/models/closed-model", key)).status_code == 404
