"""Conversations: stored chats their owners can continue, read and delete."""

import uuid

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from audit.services import audit_event_record
from inference.models import Conversation, Message, Model, ModelVersion

TITLE_CHARS = 100


# No savepoint: inside the caller's transaction (the generation's record) this joins it, and
# a failure rolls back the whole; outside one it is its own. A savepoint would cost two round
# trips on every stored chat, for a partial rollback nobody asks for.
@transaction.atomic(savepoint=False)
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
    model_id: int | None = None,
    asked_model: str | None = None,
    conversation_new: bool = False,
) -> Conversation:
    """Store one exchange (the messages sent and the reply) at once, creating the conversation.

    Where a fallback answered, `asked_model` names the model the person asked for: a new
    conversation is with that one (they continue it there), the reply records its version.

    Written where the generation ran, with its audit record: nothing here depends on the
    channel layer, and a generation that failed stores nothing (no half exchanges). A caller
    that has the version's `model_id` at hand saves a query; a continued conversation is
    touched with one UPDATE, a new one created with one INSERT. `conversation_new`: the caller
    named the conversation for this exchange (a fresh id, no stored history), so it is created
    without that UPDATE first; should one exist after all, the INSERT fails (nothing is kept).
    """
    if model_id is None:
        model_id = ModelVersion.objects.values_list("model_id", flat=True).get(pk=version_id)
    key = uuid.UUID(conversation_id)
    conversation = (
        None if conversation_new or not _touched(key) else Conversation.objects.filter(pk=key).first()
    )
    if conversation is None:
        if asked_model is not None:
            model_id = Model.objects.values_list("pk", flat=True).get(name=asked_model)
        first_user = next((m["content"] for m in new_messages if m["role"] == Message.Role.USER), "")
        conversation = Conversation.objects.create(
            id=key, owner_id=owner_id, model_id=model_id, channel=channel, title=first_user[:TITLE_CHARS]
        )
    Message.objects.bulk_create(
        [Message(conversation=conversation, role=m["role"], content=m["content"]) for m in new_messages]
        + [
            Message(
                conversation=conversation,
                role=Message.Role.ASSISTANT,
                content=reply,
                version_id=version_id,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                finish_reason=finish_reason,
            )
        ]
    )
    return conversation


def _touched(key: uuid.UUID) -> bool:
    """Mark a stored conversation as just updated; False when there is none yet."""
    return bool(Conversation.objects.filter(pk=key).update(updated_at=timezone.now()))


@transaction.atomic
def conversation_delete(*, conversation: Conversation, actor: User) -> None:
    """Delete a conversation and its messages; the audit keeps that it existed, not what it said."""
    metadata = {"conversation": str(conversation.pk), "messages": conversation.messages.count()}
    conversation.delete()
    audit_event_record(action="conversation.deleted", actor=actor, target=actor, metadata=metadata)


def conversation_model_check(*, conversation: Conversation, model: Model) -> bool:
    """A conversation continues with the model it began with."""
    return conversation.model_id == model.pk
