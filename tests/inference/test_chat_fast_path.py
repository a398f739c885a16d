"""`POST /v1/chat/completions` on the ASGI route that skips Django's request cycle.

Driven through the whole ASGI application (gatehouse.asgi), as a server would: a bearer
request with a JSON body is served by `inference.chat.asgi`; anything else goes on to Django.
A remote model runs on the event loop itself, recorded and settled by the chat pipeline.
"""

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache
from django.test import override_settings
from prometheus_client import REGISTRY

from accounts.models import ApiKey, QuotaPolicy, User
from accounts.services.usage import usage_records_flush
from audit import appender
from audit.appender import audit_appender_close
from audit.models import AuditEvent
from gatehouse.local_cache import local_caches_clear
from inference.chat import outcome
from inference.services.chat import chat_prompt_digest
from tests.database_transactions import transactions_counted
from tests.fake_openai import FakeUpstream
from tests.inference.fast_path import api_key_mint, remote_model_register, sse_events, v1_post
from tests.profile import PRODUCTION

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]


def _body(**overrides: Any) -> dict[str, Any]:
    return {"model": "remote-model", "messages": [{"role": "user", "content": "hello"}], **overrides}


async def test_a_remote_stream_is_served_relayed_recorded_and_settled(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    await database_sync_to_async(remote_model_register)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob)
    response = await v1_post(
        _body(stream=True, stream_options={"include_usage": True}), key=key, **{"X-Request-ID": "fast-1"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["x-request-id"] == "fast-1"
    assert response.headers["x-content-type-options"] == "nosniff"
    first, *middle, finish, usage, done = sse_events(response)
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(chunk["choices"][0]["delta"]["content"] for chunk in middle) == "".join(upstream.words)
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert usage["usage"] == {"prompt_tokens": 11, "completion_tokens": 8, "total_tokens": 19}
    assert done == "[DONE]"
    assert upstream.requests[-1]["body"]["stream"] is True
    event = await database_sync_to_async(AuditEvent.objects.get)(action="inference.completed")
    assert event.request_id == "fast-1"
    assert event.metadata["channel"] == "api"
    assert event.metadata["completion_tokens"] == 8
    assert await database_sync_to_async(usage_records_flush)() == 1


async def test_streamed_answers_keep_their_upstream_connection(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    # Read to the response's end, past `[DONE]`: a connection left mid-response is closed, and
    # every request would pay a new one (mutation: stop reading at `[DONE]`, 2 connections).
    upstream.keep_alive = True
    await database_sync_to_async(remote_model_register)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob)
    for _ in range(2):
        response = await v1_post(_body(stream=True), key=key)
        assert response.status_code == 200, response.text
        assert sse_events(response)[-1] == "[DONE]"
    assert upstream.connections == 1


async def test_an_upstream_that_lingers_after_done_does_not_hold_the_answer(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    upstream.keep_alive = True
    upstream.mode = "linger_after_done"
    await database_sync_to_async(remote_model_register)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob)
    response = await v1_post(_body(stream=True), key=key)
    assert response.status_code == 200, response.text
    assert "".join(
        chunk["choices"][0]["delta"].get("content", "") for chunk in sse_events(response)[:-1]
    ) == "".join(upstream.words)
    # Answered and recorded while the upstream still held its response open.
    assert (upstream.held, upstream.answered_after_hold) == (1, 0)
    assert await database_sync_to_async(AuditEvent.objects.filter(action="inference.completed").count)() == 1


@pytest.mark.skipif(not PRODUCTION, reason="the audit appender writes to PostgreSQL only")
async def test_on_postgresql_the_record_is_one_insert_from_the_event_loop(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    await database_sync_to_async(remote_model_register)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob)
    try:
        with override_settings(GATEHOUSE_AUDIT_DIRECT_APPENDS=True):
            response = await v1_post(_body(stream=True), key=key, **{"X-Request-ID": "direct-1"})
            assert response.status_code == 200, response.text
            assert appender._appender().statements == 1
    finally:
        await audit_appender_close()
    event = await database_sync_to_async(AuditEvent.objects.get)(action="inference.completed")
    assert (event.request_id, event.actor_id, event.metadata["completion_tokens"]) == ("direct-1", bob.pk, 8)


async def test_a_whole_answer_asks_the_upstream_for_a_whole_answer(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    await database_sync_to_async(remote_model_register)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob)
    response = await v1_post(_body(), key=key)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["choices"][0]["message"]["content"] == "".join(upstream.words)
    assert answer["usage"]["total_tokens"] == 19
    assert upstream.requests[-1]["body"]["stream"] is False
    assert await database_sync_to_async(AuditEvent.objects.filter(action="inference.completed").count)() == 1


async def test_an_unknown_key_is_refused_with_401_and_a_challenge(bob: User) -> None:
    response = await v1_post(_body(), key="gk_aaaaaaaaaa_not-a-real-secret")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'
    assert response.json() == {
        "error": {
            "message": "The API key is invalid.",
            "type": "authentication_error",
            "code": "authentication_failed",
        }
    }


async def test_a_key_without_the_chat_scope_is_refused_with_403(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    await database_sync_to_async(remote_model_register)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob, ("models:read",))
    response = await v1_post(_body(), key=key)
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"
    assert upstream.requests == []


async def test_a_revoked_key_is_refused_on_the_next_request(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    await database_sync_to_async(remote_model_register)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob)
    assert (await v1_post(_body(), key=key)).status_code == 200

    def revoke() -> None:
        from accounts.services.api_keys import api_key_revoke

        api_key_revoke(api_key=ApiKey.objects.get(user=bob), actor=bob)

    await database_sync_to_async(revoke)()
    response = await v1_post(_body(), key=key)
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]


async def test_unreadable_json_is_a_400_parse_error(bob: User) -> None:
    key = await database_sync_to_async(api_key_mint)(bob)
    response = await v1_post(b'{"model": ', key=key)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
    assert response.json()["error"]["message"].startswith("JSON parse error")


async def test_a_host_not_allowed_is_refused(bob: User) -> None:
    key = await database_sync_to_async(api_key_mint)(bob)
    response = await v1_post(_body(), key=key, Host="evil.example")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_host"


async def test_a_request_without_a_bearer_goes_to_django(bob: User) -> None:
    response = await v1_post(_body(), key=None)
    assert response.status_code == 401
    # DRF's answer, in the /v1 shape its exception handler gives it.
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.headers["x-frame-options"] == "DENY"


async def test_a_quota_refusal_is_429_audited_and_holds_nothing(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    await database_sync_to_async(remote_model_register)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob)
    await database_sync_to_async(QuotaPolicy.objects.create)(name="tiny", user=bob, tokens_per_day=5)
    response = await v1_post(_body(max_tokens=8), key=key)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "quota_exceeded"
    assert int(response.headers["retry-after"]) > 0
    assert upstream.requests == []
    refused = await database_sync_to_async(AuditEvent.objects.get)(action="inference.refused")
    assert refused.metadata["code"] == "quota_exceeded"
    # The refused chat gave its slot back: the user's running-chats counter is at zero.
    assert int(await database_sync_to_async(cache.get)(f"inference:chats:{bob.pk}", 0)) == 0


async def test_a_user_at_their_chat_limit_is_refused_before_any_quota_counts(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    await database_sync_to_async(remote_model_register)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob)
    with override_settings(GATEHOUSE_MAX_CONCURRENT_CHATS_PER_USER=0):
        response = await v1_post(_body(), key=key)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert "chats running" in response.json()["error"]["message"]
    assert upstream.requests == []


async def test_a_failing_upstream_is_503_recorded_and_releases_its_tokens(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    upstream.mode = "always_503"
    await database_sync_to_async(remote_model_register)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob)
    await database_sync_to_async(QuotaPolicy.objects.create)(name="day", user=bob, tokens_per_day=100_000)
    response = await v1_post(_body(stream=True), key=key)
    # Nothing was sent before the upstreams gave up: the stream never began, the error is all.
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    failed = await database_sync_to_async(AuditEvent.objects.get)(action="inference.failed")
    assert "did not answer" in failed.metadata["reason"]

    def tokens_used() -> list[dict[str, object]]:
        from accounts.services.quotas import quota_standing

        return quota_standing(user=bob, api_key=ApiKey.objects.get(user=bob))

    standing = await database_sync_to_async(tokens_used)()
    assert [row["used"] for row in standing if row["dimension"] == "tokens"] == [0]


@pytest.mark.skipif(not PRODUCTION, reason="the caches keep values only with Redis")
async def test_after_the_caches_lapse_a_request_reloads_in_one_transaction_a_step(
    alice: User, bob: User, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Entries lapse together: the request that finds them gone reloads the caller (key, user)
    # and the decision (routes, policies, budgets, teams, guardrails). Each in autocommit was a
    # transaction a query, 9 in all per lapse (mutation: call the reload outside one, and the
    # queries show up autocommitted).
    await database_sync_to_async(remote_model_register)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob)
    assert (await v1_post(_body(stream=True), key=key)).status_code == 200
    local_caches_clear()  # as when the entries lapse
    reloads = _reloads()
    with transactions_counted(monkeypatch) as counted:
        response = await v1_post(_body(stream=True), key=key)
    assert response.status_code == 200, response.text
    assert counted.autocommitted == []
    # The caller, the decision, and (off PostgreSQL's appender) the record.
    assert 2 <= counted.opened <= 3
    assert _reloads() - reloads == 2  # both counted, for /metrics and the bench's P9
    with transactions_counted(monkeypatch) as cached:
        assert (await v1_post(_body(stream=True), key=key)).status_code == 200
    # With the caches full again only the record, if any, is Django's.
    assert cached.autocommitted == []
    assert cached.opened <= 1
    assert _reloads() - reloads == 2


def _reloads() -> float:
    return REGISTRY.get_sample_value("gatehouse_local_cache_reloads_total") or 0.0


async def test_a_remote_chats_record_is_started_while_its_model_answers(
    alice: User, bob: User, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Who ran which version from where is made ahead: the end only finishes the record
    # (mutation: start nothing, and the end builds it whole, refused here).
    await database_sync_to_async(remote_model_register)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob)
    assert (await v1_post(_body(stream=True), key=key)).status_code == 200  # the caller's subject made

    def built_whole(**_: object) -> None:
        raise AssertionError("the record was built whole at the end")

    monkeypatch.setattr(outcome, "chat_outcome_event", built_whole)
    response = await v1_post(_body(stream=True), key=key, **{"X-Request-ID": "ahead-1"})
    assert response.status_code == 200, response.text
    assert sse_events(response)[-1] == "[DONE]"
    event = await database_sync_to_async(AuditEvent.objects.get)(request_id="ahead-1")
    assert (event.action, event.actor_id, event.metadata["completion_tokens"]) == (
        "inference.completed",
        bob.pk,
        8,
    )
    assert event.metadata["prompt_sha256"] == chat_prompt_digest(messages=_body()["messages"])
    assert event.metadata["model"] == "remote-model"
