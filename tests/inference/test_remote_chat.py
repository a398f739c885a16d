"""A model served by a remote OpenAI-compatible server, chatted with over the websocket."""

import pytest
from channels.db import database_sync_to_async

from accounts.models import UsageRecord, User
from accounts.services.usage import usage_records_flush
from audit.models import AuditEvent
from inference.models import ModelVersion
from inference.services import model_register, model_version_promote, model_version_register_remote
from tests.fake_openai import FakeUpstream
from tests.inference.websocket import access_token, chat_frame, communicator_for, frames_until_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]


def _remote_model(alice: User, upstream: FakeUpstream) -> ModelVersion:
    model = model_register(name="remote-model", open_to_all=True, actor=alice)
    version = model_version_register_remote(
        model=model, label="r1", base_url=upstream.base_url, remote_model="upstream-model", actor=alice
    )
    return model_version_promote(version=version, actor=alice)


async def test_a_remote_model_streams_through_the_websocket(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    await database_sync_to_async(_remote_model)(alice, upstream)
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to(chat_frame("r", model="remote-model"))
    start, *tokens, done = await frames_until_end(communicator, "r")
    await communicator.disconnect()
    assert start["version"] == "r1"
    assert "".join(token["text"] for token in tokens) == "".join(upstream.words)
    assert [token["index"] for token in tokens] == list(range(len(tokens)))
    assert done["usage"] == {"prompt_tokens": 11, "completion_tokens": 8, "total_tokens": 19}
    event = await database_sync_to_async(AuditEvent.objects.get)(action="inference.completed")
    assert event.metadata["version"] == "r1"


async def test_a_down_upstream_answers_unavailable_and_is_audited(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    upstream.mode = "always_503"
    await database_sync_to_async(_remote_model)(alice, upstream)
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to(chat_frame("r", model="remote-model"))
    frames = await frames_until_end(communicator, "r")
    await communicator.disconnect()
    assert frames[-1]["type"] == "error"
    assert frames[-1]["code"] == "unavailable"
    event = await database_sync_to_async(AuditEvent.objects.get)(action="inference.failed")
    assert "did not answer" in event.metadata["reason"]


async def test_negative_usage_from_the_upstream_credits_nothing(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    upstream.usage = {"prompt_tokens": -100000, "completion_tokens": -100000, "total_tokens": -200000}
    await database_sync_to_async(_remote_model)(alice, upstream)
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to(chat_frame("r", model="remote-model"))
    *_, done = await frames_until_end(communicator, "r")
    await communicator.disconnect()
    assert done["usage"]["completion_tokens"] == len(upstream.words)
    assert done["usage"]["prompt_tokens"] > 0
    assert await database_sync_to_async(usage_records_flush)() == 1
    record = await database_sync_to_async(UsageRecord.objects.get)()
    assert record.completion_tokens == len(upstream.words)
