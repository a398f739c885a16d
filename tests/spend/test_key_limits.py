"""A key limited to some of its owner's models, and given its own budget: it never reaches
past its owner, and what it spends is capped apart from the owner's other keys."""

from decimal import Decimal

import pytest
from channels.db import database_sync_to_async

from accounts.models import ApiKey, User
from accounts.services import api_key_create
from inference.models import Model
from inference.services import model_register
from spend.models import Budget
from spend.services import budget_save
from tests.accounts.helpers import bearer_client, login
from tests.fake_openai import FakeUpstream
from tests.inference.fast_path import remote_model_register, v1_post
from tests.spend.test_chat_spend import BODY, _priced, remote_model_register_named

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]


def _two_models(alice: User, upstream: FakeUpstream) -> None:
    _priced(remote_model_register(alice, upstream), alice, "2.5", "10")
    remote_model_register_named(alice, upstream, "other-model")


def _limited_key(bob: User) -> str:
    answer = bearer_client(login(bob).access).post(
        "/api/keys/",
        {"name": "only remote", "scopes": ["chat", "models:read"], "models": ["remote-model"]},
        format="json",
    )
    assert answer.status_code == 201
    assert answer.json()["models"] == ["remote-model"]
    return str(answer.json()["key"])


async def test_a_limited_key_sees_and_runs_only_its_models(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    await database_sync_to_async(_two_models)(alice, upstream)
    key = await database_sync_to_async(_limited_key)(bob)
    listed = await database_sync_to_async(bearer_client(key).get)("/v1/models")
    assert [entry["id"] for entry in listed.json()["data"]] == ["remote-model"]
    assert (await v1_post(BODY, key=key)).status_code == 200
    refused = await v1_post({**BODY, "model": "other-model"}, key=key)
    assert refused.status_code == 404
    assert refused.json()["error"]["message"] == (
        "Model 'other-model' does not exist or you do not have access to it."
    )
    unlimited = (
        await database_sync_to_async(api_key_create)(user=bob, name="all", scopes=["chat"], actor=bob)
    )[1]
    assert (await v1_post({**BODY, "model": "other-model"}, key=unlimited)).status_code == 200


def test_a_key_cannot_name_a_model_its_owner_may_not_use(alice: User, bob: User) -> None:
    model_register(name="hidden", actor=alice)
    client = bearer_client(login(bob).access)
    for name in ("hidden", "no-such-model"):
        answer = client.post("/api/keys/", {"name": "k", "scopes": ["chat"], "models": [name]}, format="json")
        assert answer.status_code == 400
        assert answer.json()["models"] == [f"No model named {name} that this key's owner may use."]
    assert not ApiKey.objects.filter(user=bob).exists()


async def test_a_key_loses_a_model_its_owner_loses(alice: User, bob: User, upstream: FakeUpstream) -> None:
    await database_sync_to_async(_two_models)(alice, upstream)
    key = await database_sync_to_async(_limited_key)(bob)
    model = await Model.objects.aget(name="remote-model")
    model.open_to_all = False
    await database_sync_to_async(model.save)()
    assert (await v1_post(BODY, key=key)).status_code == 404


async def test_a_keys_budget_caps_that_key_alone(alice: User, bob: User, upstream: FakeUpstream) -> None:
    await database_sync_to_async(_two_models)(alice, upstream)
    capped, capped_raw = await database_sync_to_async(api_key_create)(
        user=bob, name="capped", scopes=["chat"], actor=bob
    )
    other = (
        await database_sync_to_async(api_key_create)(user=bob, name="other", scopes=["chat"], actor=bob)
    )[1]
    budget = Budget(name="capped key", api_key=capped, period=Budget.Period.TOTAL, amount=Decimal("0.0002"))
    await database_sync_to_async(budget_save)(budget=budget, actor=bob)
    assert (await v1_post(BODY, key=capped_raw)).status_code == 200
    refused = await v1_post(BODY, key=capped_raw)
    assert refused.status_code == 429
    assert "this API key's spend in total" in refused.json()["error"]["message"]
    assert "Retry-After" not in refused.headers  # a total budget never resets
    assert (await v1_post(BODY, key=other)).status_code == 200
