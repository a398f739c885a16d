"""An event made in two halves, `audit_event_start` while the outcome is not known yet and
`audit_event_finish` once it is (a chat's record, while its model answers), is the event
`audit_event_build` makes: the same fields, stored, sealed and verified alike. A started event
is finished once."""

import pytest
from django.db import transaction

from accounts.models import User
from audit.context import RequestContext, request_context_bound
from audit.sealing import audit_seal_pending
from audit.services import audit_event_build, audit_event_finish, audit_event_insert, audit_event_start
from audit.verification import audit_chain_verify

pytestmark = pytest.mark.django_db(transaction=True)

_SAME = (
    "actor_id",
    "actor_kind",
    "actor_display",
    "actor_pseudonym",
    "actor_digest",
    "action",
    "target_type",
    "target_id",
    "target_display",
    "target_pseudonym",
    "target_digest",
    "request_id",
    "client_ip",
    "user_agent",
    "outcome",
    "metadata_json",
)


def test_an_event_made_in_two_halves_is_the_event_built_whole(alice: User, bob: User) -> None:
    context = RequestContext(request_id="req-halves", client_ip="10.0.0.7", user_agent="agent/1")
    with request_context_bound(context):
        started = audit_event_start(actor=alice, target=bob)
        whole = audit_event_build(action="test.halves", actor=alice, target=bob, metadata={"n": 1})
    # Finished outside the request's context: what the start took from it stays.
    halves = audit_event_finish(started, action="test.halves", metadata={"n": 1})
    assert {name: getattr(halves, name) for name in _SAME} == {name: getattr(whole, name) for name in _SAME}
    assert (halves.request_id, halves.user_agent) == ("req-halves", "agent/1")
    assert halves.occurred_at >= whole.occurred_at  # its time is its finish's
    with transaction.atomic():
        audit_event_insert(event=halves)
        audit_event_insert(event=whole)
    # The sealer refuses a row whose digest is not of what it holds (mutation: leave the
    # digest to the start, before the action and metadata are set).
    assert audit_seal_pending().refused == []
    assert audit_chain_verify(personal=True).ok


def test_a_started_event_is_finished_once(alice: User) -> None:
    started = audit_event_start(actor=alice)
    audit_event_finish(started, action="test.once")
    with pytest.raises(ValueError, match="already finished"):
        audit_event_finish(started, action="test.twice")
