"""Conversations: websocket chats are stored, continued by id, and readable only by their owner."""

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient, override_settings
from rest_framework.test import APIClient

from accounts.models import User
from audit.models import AuditEvent
from inference import consumers
from inference.generation import GenerationJob
from inference.models import Conversation, Message, ModelVersion
from tests.accounts.helpers import bearer_client, login
from tests.inference.websocket import access_token, chat_once

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]


async def _chat(user: User, client_id: str, **overrides: object) -> list[dict[str, object]]:
    return await chat_once(user, client_id, max_tokens=6, temperature=0.0, **overrides)


def _messages(conversation_id: object) -> list[Message]:
    return list(Message.objects.filter(conversation_id=conversation_id).select_related("version"))


async def test_a_websocket_chat_is_stored_with_its_reply_and_usage(
    bob: User, demo_version: ModelVersion
) -> None:
    start, *tokens, done = await _chat(bob, "c1")
    stored = await database_sync_to_async(_messages)(start["conversation"])
    assert [(m.role, m.content) for m in stored] == [
        ("user", "hello"),
        ("assistant", "".join(str(token["text"]) for token in tokens)),
    ]
    reply = stored[1]
    assert reply.version == demo_version
    assert (reply.completion_tokens, reply.finish_reason) == (
        done["usage"]["completion_tokens"],
        done["finish_reason"],
    )  # type: ignore[index]
    conversation = await database_sync_to_async(Conversation.objects.get)(pk=start["conversation"])
    assert (conversation.owner_id, conversation.title, conversation.channel) == (bob.pk, "hello", "websocket")


async def test_a_conversation_continues_with_its_history(bob: User, demo_version: ModelVersion) -> None:
    first = await _chat(bob, "c1")
    conversation = first[0]["conversation"]
    second = await _chat(
        bob, "c2", conversation=conversation, messages=[{"role": "user", "content": "and then?"}]
    )
    assert second[0]["conversation"] == conversation
    # The stored exchange went into the prompt ahead of the new message.
    assert second[-1]["usage"]["prompt_tokens"] > first[-1]["usage"]["prompt_tokens"]  # type: ignore[index]
    stored = await database_sync_to_async(_messages)(conversation)
    assert [m.role for m in stored] == ["user", "assistant", "user", "assistant"]
    assert stored[2].content == "and then?"


async def test_a_new_conversation_is_created_outright_and_a_continued_one_touched(
    bob: User, demo_version: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The door knows which it is: a chat with no stored history starts the conversation it
    # names, so its exchange skips the UPDATE that looks for it (mutation: always False, and
    # the first job says so).
    dispatched: list[GenerationJob] = []
    dispatch = consumers.generation_dispatch

    async def recorded(*, job: GenerationJob) -> None:
        dispatched.append(job)
        await dispatch(job=job)

    monkeypatch.setattr(consumers, "generation_dispatch", recorded)
    conversation = (await _chat(bob, "c1"))[0]["conversation"]
    await _chat(bob, "c2", conversation=conversation, messages=[{"role": "user", "content": "more"}])
    assert [job.conversation_new for job in dispatched] == [True, False]
    assert [job.conversation_id for job in dispatched] == [conversation, conversation]


async def test_someone_elses_conversation_cannot_be_continued(
    bob: User, carol: User, demo_version: ModelVersion
) -> None:
    conversation = (await _chat(bob, "c1"))[0]["conversation"]
    (error,) = await _chat(carol, "steal", conversation=conversation)
    assert (error["type"], error["code"]) == ("error", "not_found")
    (error,) = await _chat(carol, "guess", conversation="not-a-uuid")
    assert error["code"] == "not_found"
    assert await database_sync_to_async(Message.objects.count)() == 2


async def test_an_api_chat_stores_nothing_unless_the_operator_turns_it_on(
    bob: User, demo_version: ModelVersion
) -> None:
    body = {"model": "demo-tiny", "messages": [{"role": "user", "content": "via api"}], "max_tokens": 4}
    headers = {"Authorization": f"Bearer {await access_token(bob)}"}
    response = await AsyncClient().post(
        "/v1/chat/completions", body, content_type="application/json", headers=headers
    )
    assert response.status_code == 200
    assert "X-Gatehouse-Conversation" not in response
    assert not await database_sync_to_async(Conversation.objects.exists)()
    with override_settings(GATEHOUSE_STORE_API_CONVERSATIONS=True):
        response = await AsyncClient().post(
            "/v1/chat/completions", body, content_type="application/json", headers=headers
        )
    conversation = await database_sync_to_async(Conversation.objects.get)(
        pk=response["X-Gatehouse-Conversation"]
    )
    assert conversation.channel == "api"
    stored = await database_sync_to_async(_messages)(conversation.pk)
    assert (stored[0].role, stored[0].content) == ("user", "via api")
    assert stored[1].content == response.json()["choices"][0]["message"]["content"]


def _client(user: User) -> APIClient:
    return bearer_client(login(user).access)


def test_owners_list_read_and_delete_their_own_conversations_only(
    bob: User, carol: User, demo_version: ModelVersion
) -> None:
    mine = Conversation.objects.create(owner=bob, model=demo_version.model, title="mine")
    Message.objects.create(conversation=mine, role="user", content="secret")
    Conversation.objects.create(owner=carol, model=demo_version.model, title="hers")
    listed = _client(bob).get("/api/conversations/").json()
    assert [c["title"] for c in listed["results"]] == ["mine"]
    assert listed["results"][0]["message_count"] == 1
    detail = _client(bob).get(f"/api/conversations/{mine.pk}/").json()
    assert detail["messages"][0]["content"] == "secret"
    assert _client(carol).get(f"/api/conversations/{mine.pk}/").status_code == 404
    assert _client(carol).delete(f"/api/conversations/{mine.pk}/").status_code == 404
    assert _client(bob).delete(f"/api/conversations/{mine.pk}/").status_code == 204
    assert not Conversation.objects.filter(pk=mine.pk).exists()
    assert not Message.objects.filter(conversation_id=mine.pk).exists()
    event = AuditEvent.objects.get(action="conversation.deleted")
    assert event.metadata == {"conversation": str(mine.pk), "messages": 1}
    assert "secret" not in str(event.metadata)
