"""Encrypted columns: sealed per value, bound to their column, and closed to SQL lookups."""

import pytest
from django.core.exceptions import FieldError

from accounts.models import User
from encryption.envelope import ContentUnreadable, text_open, text_seal
from inference.models import Conversation, Message, ModelVersion
from tests.encryption.helpers import plain_content_store, stored_contents

pytestmark = pytest.mark.django_db


def test_the_same_text_twice_is_stored_as_two_different_values(bob: User, demo_version: ModelVersion) -> None:
    conversation = Conversation.objects.create(owner=bob, model=demo_version.model, title="t")
    Message.objects.bulk_create(
        [Message(conversation=conversation, role="user", content="same") for _ in range(2)]
    )
    first, second = stored_contents()
    assert first != second
    assert [m.content for m in conversation.messages.all()] == ["same", "same"]


def test_a_value_copied_into_another_column_does_not_decrypt(bob: User, demo_version: ModelVersion) -> None:
    title = text_seal(text="a title", purpose="inference.conversation.title")
    assert text_open(token=title, purpose="inference.conversation.title") == "a title"
    with pytest.raises(ContentUnreadable, match="does not decrypt"):
        text_open(token=title, purpose="inference.message.content")


def test_a_damaged_value_is_refused_in_words(bob: User, demo_version: ModelVersion) -> None:
    conversation = Conversation.objects.create(owner=bob, model=demo_version.model, title="t")
    message = Message.objects.create(conversation=conversation, role="user", content="intact")
    token = stored_contents()[0]
    plain_content_store(message=message, text=token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:])
    with pytest.raises(ContentUnreadable, match="does not decrypt under data key"):
        Message.objects.get(pk=message.pk)


@pytest.mark.parametrize("lookup", ["content", "content__icontains", "content__startswith", "content__in"])
def test_sql_cannot_search_encrypted_text(lookup: str) -> None:
    value: object = ["x"] if lookup.endswith("__in") else "x"
    with pytest.raises(FieldError):
        list(Message.objects.filter(**{lookup: value}))


def test_null_checks_still_work(bob: User, demo_version: ModelVersion) -> None:
    conversation = Conversation.objects.create(owner=bob, model=demo_version.model, title="t")
    Message.objects.create(conversation=conversation, role="user", content="x")
    assert Message.objects.filter(content__isnull=False).count() == 1
