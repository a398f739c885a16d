"""Guardrails at every door: the request redacted before any model sees it, or blocked with
nothing sent or charged; the answer redacted as it streams (SSE and websocket) or whole; each
action audited with the rule and kinds, never the text."""

from typing import Any

import pytest
from channels.db import database_sync_to_async

from accounts.models import UsageRecord, User
from accounts.services.usage import usage_records_flush
from audit.models import AuditEvent
from guardrails.models import GuardrailPolicy
from guardrails.services import guardrail_policy_save
from inference.models import Message, Model
from tests.fake_openai import FakeUpstream
from tests.inference.fast_path import api_key_mint, remote_model_register, sse_events, v1_post
from tests.inference.websocket import access_token, chat_frame, communicator_for, frames_until_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]

CARD_WORDS = ["Card ", "4111 ", "1111 ", "1111 ", "1111", ". Mail ", "ops@", "example.com", " now."]
REDACTED = "Card [CARD]. Mail [EMAIL] now."


def _guarded(alice: User, upstream: FakeUpstream, **fields: Any) -> str:
    remote_model_register(alice, upstream)
    policy = GuardrailPolicy(
        name="pii",
        model=Model.objects.get(name="remote-model"),
        pii={"email": "redact", "card": "block", "credential": "redact"},
        **fields,
    )
    guardrail_policy_save(policy=policy, actor=alice)
    return api_key_mint(User.objects.get(username="bob"))


def _body(content: str, **more: Any) -> dict[str, Any]:
    return {"model": "remote-model", "messages": [{"role": "user", "content": content}], **more}


async def _events(action: str) -> list[AuditEvent]:
    return [event async for event in AuditEvent.objects.filter(action=action).order_by("id")]


async def test_the_model_sees_the_request_redacted_and_the_trail_says_what_kind(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    key = await database_sync_to_async(_guarded)(alice, upstream)
    answer = await v1_post(_body("I am bob@example.com, key sk-proj-abcdefghijklmnopqrstuv"), key=key)
    assert answer.status_code == 200
    (sent,) = upstream.requests
    assert sent["body"]["messages"][0]["content"] == "I am [EMAIL], key [CREDENTIAL]"
    (event,) = await _events("guardrail.redacted")
    assert event.metadata["direction"] == "request"
    assert event.metadata["kinds"] == {"credential": 1, "email": 1}
    assert event.metadata["policies"] == ["pii"]
    assert "example.com" not in str(event.metadata)


async def test_a_blocked_request_reaches_no_model_costs_nothing_and_is_audited(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    key = await database_sync_to_async(_guarded)(alice, upstream)
    refused = await v1_post(_body("charge 4111 1111 1111 1111 please"), key=key)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "content_blocked"
    assert "a payment card number" in error["message"]
    assert "4111" not in refused.text
    assert upstream.requests == []
    (denied,) = await _events("inference.refused")
    assert denied.metadata["code"] == "content_blocked"
    assert "4111" not in str(denied.metadata)
    await database_sync_to_async(usage_records_flush)()
    assert await UsageRecord.objects.acount() == 0


async def test_a_streamed_answer_is_redacted_with_no_digit_of_the_card_sent(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    key = await database_sync_to_async(_guarded)(alice, upstream)
    upstream.words, upstream.delay = CARD_WORDS, 0.01
    answer = await v1_post(_body("hello", stream=True), key=key)
    pieces = [
        event["choices"][0]["delta"].get("content") or ""
        for event in sse_events(answer)
        if event != "[DONE]" and event["choices"]
    ]
    assert "".join(pieces) == REDACTED
    assert not any(char.isdigit() for piece in pieces for char in piece)
    (event,) = await _events("guardrail.redacted")
    assert (event.metadata["direction"], event.metadata["kinds"]) == ("answer", {"card": 1, "email": 1})


async def test_a_whole_answer_is_redacted_too(alice: User, bob: User, upstream: FakeUpstream) -> None:
    key = await database_sync_to_async(_guarded)(alice, upstream)
    upstream.words = CARD_WORDS
    answer = await v1_post(_body("hello"), key=key)
    assert answer.json()["choices"][0]["message"]["content"] == REDACTED


async def test_an_answer_left_unchecked_where_the_policy_says_so(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    key = await database_sync_to_async(_guarded)(alice, upstream, check_output=False)
    upstream.words = CARD_WORDS
    answer = await v1_post(_body("hello"), key=key)
    assert answer.json()["choices"][0]["message"]["content"] == "".join(CARD_WORDS)


async def test_a_prompt_over_the_limit_is_refused(alice: User, bob: User, upstream: FakeUpstream) -> None:
    key = await database_sync_to_async(_guarded)(alice, upstream, max_prompt_chars=5)
    refused = await v1_post(_body("far too long"), key=key)
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "prompt_too_long")
    assert upstream.requests == []


async def test_the_websocket_sends_redacted_tokens_and_stores_the_redacted_reply(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    await database_sync_to_async(_guarded)(alice, upstream)
    upstream.words, upstream.delay = CARD_WORDS, 0.01
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to(
        chat_frame("c1", model="remote-model", messages=[{"role": "user", "content": "hi"}])
    )
    frames = await frames_until_end(communicator, "c1")
    blocked = chat_frame(
        "c2", model="remote-model", messages=[{"role": "user", "content": "4111111111111111"}]
    )
    await communicator.send_json_to(blocked)
    (error,) = await frames_until_end(communicator, "c2")
    await communicator.disconnect()

    tokens = [frame for frame in frames if frame["type"] == "token"]
    assert "".join(frame["text"] for frame in tokens) == REDACTED
    assert [frame["index"] for frame in tokens] == list(range(len(tokens)))
    assert frames[-1]["type"] == "done"
    assert (error["type"], error["code"]) == ("error", "content_blocked")
    stored = [message.content async for message in Message.objects.filter(role="assistant")]
    assert stored == [REDACTED]


async def test_an_answer_loses_the_deny_lists_terms_as_it_streams(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    key = await database_sync_to_async(_guarded)(alice, upstream, deny_terms=["Project Falcon"])
    upstream.words, upstream.delay = ["The ", "proj", "ect Fa", "lcon ", "launch"], 0.01
    answer = await v1_post(_body("hello", stream=True), key=key)
    pieces = [
        event["choices"][0]["delta"].get("content") or ""
        for event in sse_events(answer)
        if event != "[DONE]" and event["choices"]
    ]
    assert "".join(pieces) == "The [DENIED] launch"
    assert not any("alcon" in piece for piece in pieces)
    (event,) = await _events("guardrail.redacted")
    assert event.metadata["kinds"] == {"denied": 1}


async def test_a_conversation_with_tool_calls_is_redacted_once_and_measured_once(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    # The plain messages hold 113 characters (the call rendered as text); the verbatim ones
    # (which the upstream is sent) say the same again: measured once, they fit.
    key = await database_sync_to_async(_guarded)(alice, upstream, max_prompt_chars=120)
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    body = {
        "model": "remote-model",
        "messages": [
            {"role": "user", "content": "mail bob@example.com"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "found a@b.io"},
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
    }
    answer = await v1_post(body, key=key)
    assert answer.status_code == 200, answer.text
    sent = upstream.requests[0]["body"]["messages"]
    assert (sent[0]["content"], sent[2]["content"]) == ("mail [EMAIL]", "found [EMAIL]")
    (event,) = await _events("guardrail.redacted")
    assert event.metadata["kinds"] == {"email": 2}
