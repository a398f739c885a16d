"""Appends in the caller's transaction (`audit_event_record`) on PostgreSQL: one INSERT the
server prepares once per connection, sent on Django's own connection and transaction.

What they are held to: the row is stored as built and seals; the server keeps one prepared
statement for every append; a row the database refuses raises Django's error and rolls the
caller's transaction back; where Django logs queries, the INSERT is in its log.
"""

import uuid

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from audit.context import RequestContext, request_context_bound
from audit.models import AuditEvent
from audit.sealing import audit_seal_pending
from audit.services import audit_event_build, audit_event_insert, audit_event_record
from audit.verification import audit_chain_verify
from tests.profile import PRODUCTION

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not PRODUCTION, reason="prepared appends are PostgreSQL's"),
]
_PREPARED_INSERTS = (
    "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'INSERT INTO audit_auditevent %%'"
)


def _prepared_inserts() -> int:
    with connection.cursor() as cursor:
        cursor.execute(_PREPARED_INSERTS)
        return int(cursor.fetchone()[0])


def test_appends_share_one_prepared_insert_and_their_rows_are_stored_as_built(alice: User, bob: User) -> None:
    context = RequestContext(
        request_id="req-prepared-1", client_ip="::ffff:10.1.2.3", user_agent="Büro/1.0 ✓"
    )
    events = []
    with request_context_bound(context):
        for n in range(4):
            if n == 1:  # the first append prepared its statement (one per types of values)
                prepared = _prepared_inserts()
            with transaction.atomic():
                events.append(
                    audit_event_record(
                        action="test.prepared", actor=alice, target=bob, metadata={"n": n, "text": 'ü "q"'}
                    )
                )

    assert prepared >= 1
    assert _prepared_inserts() == prepared  # the later ones used it
    for event in events:
        stored = AuditEvent.objects.get(pk=event.pk)
        assert stored.uuid == event.uuid
        assert stored.client_ip == "10.1.2.3"
        assert (stored.user_agent, stored.metadata_json) == (event.user_agent, event.metadata_json)
    outcome = audit_seal_pending()
    assert outcome.refused == []
    assert audit_chain_verify(personal=True).ok


def test_a_refused_append_raises_djangos_error_and_its_transaction_rolls_back(alice: User) -> None:
    first = audit_event_record(action="test.prepared.first")
    again = audit_event_build(action="test.prepared.again")
    again.uuid = first.uuid  # unique: the database refuses it

    def create_then_append() -> None:
        with transaction.atomic():
            User.objects.create_user(username="rolled-back", password=str(uuid.uuid4()))
            audit_event_insert(event=again)

    with pytest.raises(IntegrityError):
        create_then_append()

    assert not User.objects.filter(username="rolled-back").exists()
    assert AuditEvent.objects.filter(action="test.prepared.again").count() == 0
    # The connection is still good for the next append.
    audit_event_record(action="test.prepared.after")
    assert AuditEvent.objects.filter(action="test.prepared.after").count() == 1


def test_where_django_logs_queries_the_insert_is_in_its_log(alice: User) -> None:
    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        audit_event_record(action="test.prepared.logged", actor=alice)

    assert any(query["sql"].startswith("INSERT INTO audit_auditevent") for query in captured.captured_queries)
    assert AuditEvent.objects.filter(action="test.prepared.logged").count() == 1
