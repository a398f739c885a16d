"""Fallback models: when a model cannot answer before its first token, the models it names are
asked in turn, each admitted as if the caller had asked for it (access, quotas); the answer
names the model that served, and the trail has both chats."""

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core.exceptions import ValidationError

from accounts.models import QuotaPolicy, User
from audit.models import AuditEvent
from inference.engines.loader import engines_clear
from inference.models import Conversation, Model
from inference.services import (
    model_access_grant,
    model_register,
    model_serving_update,
    model_version_promote,
    model_version_register_remote,
)
from tests.fake_openai import FakeUpstream, fake_upstream
from tests.inference.fast_path import api_key_mint, remote_model_register, sse_events, v1_post
from tests.inference.websocket import access_token, chat_frame, communicator_for, frames_until_end
from tests.quota_windows import quota_minute_fresh_wait

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]


@pytest.fixture
def backup() -> Iterator[FakeUpstream]:
    with fake_upstream() as server:
        server.words = ["from ", "the ", "backup"]
        yield server


def _with_fallback(
    alice: User, upstream: FakeUpstream, backup: FakeUpstream, *, open_to_all: bool = True
) -> None:
    """`remote-model` on `upstream`, falling back to `backup-model` on `backup`."""
    version = remote_model_register(alice, upstream)
    model = model_register(name="backup-model", open_to_all=open_to_all, actor=alice)
    backup_version = model_version_register_remote(
        model=model, label="b1", base_url=backup.base_url, remote_model="upstream-model", actor=alice
    )
    model_version_promote(version=backup_version, actor=alice)
    model_serving_update(model=version.model, changes={"fallback_models": ["backup-model"]}, actor=alice)
    engines_clear()


def _body(**overrides: Any) -> dict[str, Any]:
    return {"model": "remote-model", "messages": [{"role": "user", "content": "hi"}], **overrides}


def _records(request_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (event.action, event.target_display, event.metadata)
        for event in AuditEvent.objects.filter(
            request_id=request_id, action__startswith="inference."
        ).order_by("pk")
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_failing_model_is_answered_by_its_fallback_naming_it(
    alice: User, bob: User, upstream: FakeUpstream, backup: FakeUpstream, stream: bool
) -> None:
    await database_sync_to_async(_with_fallback)(alice, upstream, backup)
    upstream.mode = "always_503"
    key = await database_sync_to_async(api_key_mint)(bob)
    answer = await v1_post(_body(stream=stream), key=key, **{"X-Request-ID": f"fallback-{stream}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Gatehouse-Model"] == "backup-model"
    if stream:
        chunks = [event for event in sse_events(answer) if event != "[DONE]"]
        assert {chunk["model"] for chunk in chunks} == {"backup-model"}
        text = "".join(
            chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks if chunk["choices"]
        )
    else:
        assert answer.json()["model"] == "backup-model"
        assert answer.json()["system_fingerprint"] == "backup-model@b1"
        text = answer.json()["choices"][0]["message"]["content"]
    assert text == "from the backup"
    records = await database_sync_to_async(_records)(f"fallback-{stream}")
    assert [(action, target) for action, target, _ in records] == [
        ("inference.failed", "remote-model@r1"),
        ("inference.completed", "backup-model@b1"),
    ]
    failed, served = records[0][2], records[1][2]
    assert {attempt["upstream"] for attempt in failed["attempts"]} == {upstream.base_url}
    assert served["fallback_from"] == "remote-model"
    assert served["upstream"] == backup.base_url


async def test_a_caller_without_access_to_the_fallback_gets_the_original_error(
    alice: User, bob: User, upstream: FakeUpstream, backup: FakeUpstream
) -> None:
    await database_sync_to_async(_with_fallback)(alice, upstream, backup, open_to_all=False)
    upstream.mode = "always_503"
    key = await database_sync_to_async(api_key_mint)(bob)
    answer = await v1_post(_body(), key=key, **{"X-Request-ID": "no-access"})
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "unavailable"
    assert "backup-model" not in answer.text  # nothing says another model exists
    assert backup.requests == []
    actions = [action for action, _, _ in await database_sync_to_async(_records)("no-access")]
    assert actions == ["inference.failed", "inference.refused"]  # the fallback's refusal is on record

    # Given access, the same caller is served by it.
    await database_sync_to_async(
        lambda: model_access_grant(model=Model.objects.get(name="backup-model"), grantee=bob, actor=alice)
    )()
    assert (await v1_post(_body(), key=key)).json()["model"] == "backup-model"


async def test_the_fallback_is_held_to_the_callers_quotas(
    alice: User, bob: User, upstream: FakeUpstream, backup: FakeUpstream
) -> None:
    await database_sync_to_async(_with_fallback)(alice, upstream, backup)
    # One request a minute: the original model's admission takes it, so the fallback's is refused.
    await database_sync_to_async(QuotaPolicy.objects.create)(name="one", user=bob, requests_per_minute=1)
    upstream.mode = "always_503"
    key = await database_sync_to_async(api_key_mint)(bob)
    # Both admissions in one minute window (the upstream's failures and retries take a while).
    await asyncio.to_thread(quota_minute_fresh_wait)
    answer = await v1_post(_body(), key=key)
    # The original model's error, not the fallback's refusal: the caller asked for that model.
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "unavailable"
    assert backup.requests == []


async def test_a_failure_after_the_first_token_does_not_fall_back(
    alice: User, bob: User, upstream: FakeUpstream, backup: FakeUpstream
) -> None:
    await database_sync_to_async(_with_fallback)(alice, upstream, backup)
    upstream.mode = "reset_mid_stream"
    key = await database_sync_to_async(api_key_mint)(bob)
    answer = await v1_post(_body(stream=True), key=key)
    assert answer.status_code == 200  # the stream had begun: its last event is the error
    assert sse_events(answer)[-1]["error"]["code"] == "unavailable"
    assert backup.requests == []


def test_fallbacks_name_other_existing_models_of_the_same_kind(alice: User, upstream: FakeUpstream) -> None:
    model = remote_model_register(alice, upstream).model
    model_register(name="vectors", kind=Model.Kind.EMBEDDING, actor=alice)
    for names, why in (
        (["nope"], "No model named nope"),
        (["remote-model"], "never this one"),
        (["vectors"], "is not a chat model"),
        (["a", "b", "c", "d"], "At most 3"),
    ):
        with pytest.raises(ValidationError, match=why):
            model_serving_update(model=model, changes={"fallback_models": names}, actor=alice)
    assert Model.objects.get(pk=model.pk).fallback_models == []
    assert not AuditEvent.objects.filter(action="model.serving_changed").exists()


async def test_a_websocket_chat_falls_back_and_its_conversation_stays_with_the_model_asked(
    alice: User, bob: User, upstream: FakeUpstream, backup: FakeUpstream
) -> None:
    await database_sync_to_async(_with_fallback)(alice, upstream, backup)
    upstream.mode = "always_503"
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to(chat_frame("f", model="remote-model"))
    frames = await frames_until_end(communicator, "f")
    asked, answered, *tokens, done = frames
    # The first `start` named the model asked for; the second, the fallback that answers.
    assert (asked["type"], asked["model"]) == ("start", "remote-model")
    assert (answered["type"], answered["model"], answered["fallback_from"]) == (
        "start",
        "backup-model",
        "remote-model",
    )
    assert "".join(token["text"] for token in tokens) == "from the backup"
    assert done["type"] == "done"
    # The conversation is the person's with the model they asked for: they go on there.
    conversation = await database_sync_to_async(
        lambda: Conversation.objects.select_related("model").get(pk=asked["conversation"])
    )()
    assert conversation.model.name == "remote-model"
    upstream.mode = "ok"
    await communicator.send_json_to(chat_frame("g", model="remote-model", conversation=asked["conversation"]))
    again = await frames_until_end(communicator, "g")
    await communicator.disconnect()
    assert again[-1]["type"] == "done"
    assert "".join(frame.get("text", "") for frame in again) == "".join(upstream.words)


async def test_a_websocket_caller_without_access_to_the_fallback_gets_the_original_error(
    alice: User, bob: User, upstream: FakeUpstream, backup: FakeUpstream
) -> None:
    await database_sync_to_async(_with_fallback)(alice, upstream, backup, open_to_all=False)
    upstream.mode = "always_503"
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to(chat_frame("f", model="remote-model"))
    start, error = await frames_until_end(communicator, "f")
    await communicator.disconnect()
    assert start["model"] == "remote-model"
    assert (error["type"], error["code"]) == ("error", "unavailable")
    assert "backup" not in error["message"]
    assert backup.requests == []
