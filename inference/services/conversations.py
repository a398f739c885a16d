"""Conversations: stored chats their owners can continue, read and delete."""

import uuid

from django.db import transaction

from accounts.models import User
from audit.services import audit_event_record
from inference.models import Conversation, Message, Model, ModelVersion

TITLE_CHARS = 100


@transaction.atomic
def conversation_exchange_record(
    *,
    conversation_id: str,
    owner_id: int,
    version_id: int,
    channel: str,
    new_messages: list[dict[str, str]],
    reply: str,
    prompt_tokens: int,
    completion_tokens: int,
    finish_reason: str,
) -> Conversation:
    """Store one exchange (the messages sent and the reply) at once, creating the conversation.

    Written where the generation ran, with its audit record: nothing here depends on the
    channel layer, and a generation that failed stores nothing (no half exchanges).
    """
    version = ModelVersion.objects.select_related("model").get(pk=version_id)
    first_user = next((m["content"] for m in new_messages if m["role"] == Message.Role.USER), "")
    conversation, _ = Conversation.objects.get_or_create(
        id=uuid.UUID(conversation_id),
        defaults={
            "owner_id": owner_id,
            "model": version.model,
            "channel": channel,
            "title": first_user[:TITLE_CHARS],
        },
    )
    Message.objects.bulk_create(
        [Message(conversation=conversation, role=m["role"], content=m["content"]) for m in new_messages]
        + [
            Message(
                conversation=conversation,
                role=Message.Role.ASSISTANT,
                content=reply,
                version=version,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                finish_reason=finish_reason,
            )
        ]
    )
    conversation.save(update_fields=["updated_at"])
    return conversation


@transaction.atomic
def conversation_delete(*, conversation: Conversation, actor: User) -> None:
    """Delete a conversation and its messages; the audit keeps that it existed, not what it said."""
    metadata = {"conversation": str(conversation.pk), "messages": conversation.messages.count()}
    conversation.delete()
    audit_event_record(action="conversation.deleted", actor=actor, target=actor, metadata=metadata)


def conversation_model_check(*, conversation: Conversation, model: Model) -> bool:
    """A conversation continues with the model it began with."""
    return conversation.model_id == model.pk
