"""`POST /v1/completions`: a prompt continued as it is, on a local and a remote version,
governed as chats are (charged, audited, counted)."""

from typing import Any

import pytest
from channels.db import database_sync_to_async

from accounts.models import UsageRecord, User
from accounts.services.usage import usage_records_flush
from audit.models import AuditEvent
from gatehouse.metrics import HTTP_REQUESTS
from inference.engines.base import ChatMessage
from inference.engines.local import LocalTransformersEngine
from inference.models import ModelVersion
from tests.fake_openai import FakeUpstream
from tests.inference.fast_path import api_key_mint, remote_model_register, sse_events, v1_post
from tests.waiting import completed_audit_event_for, eventually

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]

URL = "/v1/completions"
PROMPT = "Once upon a time"


def _texts(events: list[Any]) -> str:
    return "".join(
        event["choices"][0]["text"] for event in events if isinstance(event, dict) and event["choices"]
    )


def _answered() -> float:
    return float(HTTP_REQUESTS.labels(route="v1/completions", method="POST", status="200")._value.get())


async def test_a_local_prompt_is_continued_without_the_chat_template(
    bob: User, demo_version: ModelVersion, engine: LocalTransformersEngine
) -> None:
    key = await database_sync_to_async(api_key_mint)(bob)
    answered = _answered()
    body = {"model": "demo-tiny", "prompt": PROMPT, "max_tokens": 6, "temperature": 0}
    response = await v1_post(body, key=key, url=URL, **{"X-Request-ID": "legacy-1"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["object"], answer["id"][:5], answer["system_fingerprint"]) == (
        "text_completion",
        "cmpl-",
        "demo-tiny@v1",
    )
    (choice,) = answer["choices"]
    assert (choice["index"], choice["logprobs"], choice["finish_reason"]) == (0, None, "length")
    # The prompt's own tokens were continued, not the chat template's role markers around it.
    assert answer["usage"]["prompt_tokens"] == len(engine.encode_text(PROMPT))
    assert len(engine.encode_text(PROMPT)) < len(
        engine.encode_prompt([ChatMessage(role="user", content=PROMPT)])
    )
    assert answer["usage"]["completion_tokens"] == 6
    event = await eventually(completed_audit_event_for(request_id="legacy-1"))
    assert (event.metadata["completion_tokens"], event.metadata["channel"]) == (6, "api")
    assert await database_sync_to_async(usage_records_flush)() == 1
    assert _answered() == answered + 1


async def test_a_local_stream_sends_text_completion_chunks_then_usage(
    bob: User, demo_version: ModelVersion
) -> None:
    key = await database_sync_to_async(api_key_mint)(bob)
    whole = await v1_post(
        {"model": "demo-tiny", "prompt": [PROMPT], "max_tokens": 5, "temperature": 0}, key=key, url=URL
    )
    body = {
        "model": "demo-tiny",
        "prompt": PROMPT,
        "max_tokens": 5,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = await v1_post(body, key=key, url=URL)
    assert response.status_code == 200, response.text
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    *chunks, finish, usage = events[:-1]
    assert all(chunk["object"] == "text_completion" and chunk["usage"] is None for chunk in chunks)
    assert finish["choices"][0]["finish_reason"] == "length"
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 5
    # Greedy: the stream says what the whole answer said.
    assert _texts(chunks) == whole.json()["choices"][0]["text"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_remote_version_is_asked_at_its_own_completions(
    alice: User, bob: User, upstream: FakeUpstream, stream: bool
) -> None:
    await database_sync_to_async(remote_model_register)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob)
    body = {"model": "remote-model", "prompt": PROMPT, "max_tokens": 20, "stop": ["\n"], "stream": stream}
    response = await v1_post(body, key=key, url=URL)
    assert response.status_code == 200, response.text
    text = _texts(sse_events(response)) if stream else response.json()["choices"][0]["text"]
    assert text == "".join(upstream.words)
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1/completions"
    assert (sent["body"]["prompt"], sent["body"]["stop"], sent["body"]["stream"]) == (PROMPT, ["\n"], stream)
    assert "messages" not in sent["body"]
    event = await database_sync_to_async(AuditEvent.objects.get)(action="inference.completed")
    assert event.metadata["completion_tokens"] == len(upstream.words)
    assert await database_sync_to_async(usage_records_flush)() == 1
    record = await database_sync_to_async(UsageRecord.objects.get)()
    assert record.prompt_tokens == 11  # what the upstream reported


INVALID = {
    "no-prompt": ({}, "prompt: you must provide a prompt."),
    "two-prompts": ({"prompt": ["a", "b"]}, "prompt: Only one prompt per request is supported."),
    "token-array": ({"prompt": [1, 2, 3]}, "prompt: must be a string (token arrays are not supported)."),
    "echo": ({"prompt": "x", "echo": True}, "echo: echo is not supported."),
    "suffix": ({"prompt": "x", "suffix": "end"}, "suffix: suffix (insertion) is not supported."),
    "best-of": ({"prompt": "x", "best_of": 3}, "best_of: best_of must be 1."),
    "logprobs": (
        {"prompt": "x", "logprobs": 2},
        "logprobs: Log probabilities are served by /v1/chat/completions (logprobs, top_logprobs), not here.",
    ),
    "messages": (
        {"prompt": "x", "messages": []},
        "messages: Unrecognized request argument supplied: messages",
    ),
    "too-long": ({"prompt": "x" * 40_000}, "prompt must be a string of at most 32000 characters."),
}


@pytest.mark.parametrize(("overrides", "message"), INVALID.values(), ids=INVALID.keys())
async def test_invalid_requests_are_400s_naming_the_field(
    bob: User, demo_version: ModelVersion, overrides: dict[str, Any], message: str
) -> None:
    key = await database_sync_to_async(api_key_mint)(bob)
    response = await v1_post({"model": "demo-tiny", **overrides}, key=key, url=URL)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["message"]) == ("invalid_request_error", message)
    assert not await database_sync_to_async(
        AuditEvent.objects.filter(action__startswith="inference.").exists
    )()


async def test_a_key_without_the_chat_scope_is_refused(bob: User, demo_version: ModelVersion) -> None:
    key = await database_sync_to_async(api_key_mint)(bob, ("models:read",))
    response = await v1_post({"model": "demo-tiny", "prompt": "x"}, key=key, url=URL)
    assert response.status_code == 403, response.text
