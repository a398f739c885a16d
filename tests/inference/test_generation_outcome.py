"""A generation's end: its stored exchange and its audit record commit together, or neither."""

import uuid
from typing import Any

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from audit.models import AuditEvent
from inference import generation
from inference.generation import GenerationJob, generation_run
from inference.models import Conversation, Message, ModelVersion
from inference.services import chat as chat_services
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


def _exchange(owner: User, version: ModelVersion, *, conversation_id: str = "", new: bool = False) -> None:
    """One exchange ("hello", "hi") stored, in a new conversation unless `conversation_id` names one."""
    conversation_exchange_record(
        conversation_id=conversation_id or str(uuid.uuid4()),
        conversation_new=new,
        owner_id=owner.pk,
        version_id=version.pk,
        channel="websocket",
        new_messages=[{"role": "user", "content": "hello"}],
        reply="hi",
        prompt_tokens=1,
        completion_tokens=1,
        finish_reason="stop",
    )


def test_an_exchange_joins_the_records_transaction_without_a_savepoint(
    bob: User, demo_version: ModelVersion
) -> None:
    # A first exchange: the data key the stored text is encrypted with exists after it (making
    # one takes a savepoint of its own, once).
    _exchange(bob, demo_version)
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        _exchange(bob, demo_version)
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


def test_an_exchange_that_starts_its_conversation_does_not_look_for_it_first(
    bob: User, demo_version: ModelVersion
) -> None:
    def exchange(conversation_id: str, *, new: bool) -> None:
        _exchange(bob, demo_version, conversation_id=conversation_id, new=new)

    def updates(queries: CaptureQueriesContext) -> list[str]:
        return [query["sql"] for query in queries.captured_queries if query["sql"].startswith("UPDATE")]

    exchange(str(uuid.uuid4()), new=True)  # the stored text's data key made (once)
    conversation_id = str(uuid.uuid4())
    with CaptureQueriesContext(connection) as started:
        exchange(conversation_id, new=True)
    # One round trip fewer on every new conversation (mutation: look anyway, and it shows).
    assert updates(started) == []
    with CaptureQueriesContext(connection) as continued:
        exchange(conversation_id, new=False)
    assert len(updates(continued)) == 1
    assert Message.objects.filter(conversation_id=conversation_id).count() == 4
    # Named new but stored already: the INSERT fails, and nothing more is kept.
    with pytest.raises(IntegrityError), transaction.atomic():
        exchange(conversation_id, new=True)
    assert Message.objects.filter(conversation_id=conversation_id).count() == 4


def test_a_generations_record_is_begun_after_its_first_tokens_and_the_end_only_finishes_it(
    bob: User, demo_version: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where eight streams end together in one worker, every round trip of their records waits
    # its turn behind the batch: the caller is read, and the record begun, while the model
    # answers (mutation: begin nothing, and the end reads the caller itself, refused here).
    job, relay = _stored_job(bob, demo_version), _Relay()
    begun = generation.chat_record_start
    sent_when_begun: list[list[str]] = []

    def begin(**kwargs: Any) -> AuditEvent:
        sent_when_begun.append([event["type"] for event in relay.events])
        return begun(**kwargs)

    def read_at_the_end(**_: Any) -> AuditEvent:
        raise AssertionError("the end read the caller")

    monkeypatch.setattr(generation, "chat_record_start", begin)
    monkeypatch.setattr(chat_services, "chat_record_start", read_at_the_end)
    generation_run(job=job, relay=relay)
    assert relay.events[-1]["type"] == "generation.finished"
    # Once, after the first tokens had gone, before the end.
    assert sent_when_begun == [["generation.tokens"]]
    (record,) = _records(job)
    assert (record.action, record.actor_id, record.target_id) == (
        "inference.completed",
        bob.pk,
        str(demo_version.pk),
    )


def test_a_record_that_could_not_be_begun_early_is_built_whole_at_the_end(
    bob: User, demo_version: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, relay = _stored_job(bob, demo_version), _Relay()

    def unreachable(**_: Any) -> AuditEvent:
        raise DatabaseError("the database did not answer")

    monkeypatch.setattr(generation, "chat_record_start", unreachable)
    generation_run(job=job, relay=relay)
    assert relay.events[-1]["type"] == "generation.finished"
    assert [(record.action, record.actor_id) for record in _records(job)] == [("inference.completed", bob.pk)]
