"""A generation's end: its stored exchange and its audit record commit together, or neither."""

import uuid
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from audit.models import AuditEvent
from inference import generation
from inference.generation import GenerationJob, generation_run
from inference.models import Conversation, Message, ModelVersion
from inference.services.conversations import conversation_exchange_record
from tests.inference.jobs import generation_job

pytestmark = pytest.mark.django_db(transaction=True)


class _Relay:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.events.append(message)


def _stored_job(bob: User, version: ModelVersion) -> GenerationJob:
    return generation_job(bob, version, conversation_id=str(uuid.uuid4()))


def _records(job: GenerationJob) -> list[AuditEvent]:
    return [
        event
        for event in AuditEvent.objects.filter(action__startswith="inference.")
        if event.metadata.get("generation_id") == job.generation_id
    ]


def test_a_finished_generation_stores_its_exchange_and_its_record(
    bob: User, demo_version: ModelVersion
) -> None:
    job, relay = _stored_job(bob, demo_version), _Relay()
    generation_run(job=job, relay=relay)
    assert relay.events[-1]["type"] == "generation.finished"
    assert Conversation.objects.filter(pk=job.conversation_id).exists()
    assert [record.action for record in _records(job)] == ["inference.completed"]


def test_an_exchange_joins_the_records_transaction_without_a_savepoint(
    bob: User, demo_version: ModelVersion
) -> None:
    def exchange() -> None:
        conversation_exchange_record(
            conversation_id=str(uuid.uuid4()),
            owner_id=bob.pk,
            version_id=demo_version.pk,
            channel="websocket",
            new_messages=[{"role": "user", "content": "hello"}],
            reply="hi",
            prompt_tokens=1,
            completion_tokens=1,
            finish_reason="stop",
        )

    # A first exchange: the data key the stored text is encrypted with exists after it (making
    # one takes a savepoint of its own, once).
    exchange()
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        exchange()
    # Two round trips saved on every stored chat: nothing to roll back to inside the record.
    assert [query["sql"] for query in queries.captured_queries if "SAVEPOINT" in query["sql"]] == []


def test_when_the_exchange_cannot_be_stored_nothing_is_and_the_generation_is_recorded_failed(
    bob: User, demo_version: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, relay = _stored_job(bob, demo_version), _Relay()

    def store_half_then_fail(**kwargs: Any) -> None:
        Conversation.objects.create(
            id=uuid.UUID(kwargs["conversation_id"]),
            owner_id=kwargs["owner_id"],
            model_id=demo_version.model_id,
        )
        raise DatabaseError("the messages could not be written")

    monkeypatch.setattr(generation, "conversation_exchange_record", store_half_then_fail)
    generation_run(job=job, relay=relay)
    assert relay.events[-1]["type"] == "generation.failed"
    assert not Conversation.objects.filter(pk=job.conversation_id).exists()
    assert [record.action for record in _records(job)] == ["inference.failed"]


def test_when_the_audit_record_cannot_be_written_the_exchange_is_not_kept(
    bob: User, demo_version: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, relay = _stored_job(bob, demo_version), _Relay()

    def refuse(**_: Any) -> None:
        raise DatabaseError("the audit table refused the row")

    monkeypatch.setattr(generation, "chat_record_outcome", refuse)
    generation_run(job=job, relay=relay)
    # The client hears that it failed, and no conversation holds a reply the trail lacks.
    assert relay.events[-1]["type"] == "generation.failed"
    assert not Conversation.objects.filter(pk=job.conversation_id).exists()
    assert not Message.objects.filter(conversation_id=job.conversation_id).exists()
