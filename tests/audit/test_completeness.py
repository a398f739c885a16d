"""Every security-relevant action is on the trail, in its own transaction.

If the audit insert fails, the action does not happen; bulk writes that skip the services
are audited anyway; console edits arrive through the admin's own change log.
"""

from collections.abc import Callable
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey, QuotaPolicy, Team, User
from accounts.services import api_key_create, team_create, user_deactivate
from accounts.services.quotas import quota_policy_save
from audit.models import AuditEvent
from inference.models import Model
from inference.services import model_register
from tests.accounts.helpers import bearer_client, login
from tests.audit.tampering import sql


@pytest.fixture
def audit_store_failing(db: None) -> None:
    """Every audit insert raises, as a full disk or a revoked grant would make it."""
    if connection.vendor == "postgresql":
        sql(
            "CREATE FUNCTION audit_store_failing() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'audit store failing'; END; $$ LANGUAGE plpgsql"
        )
        sql(
            "CREATE TRIGGER audit_store_failing BEFORE INSERT ON audit_auditevent "
            "FOR EACH ROW EXECUTE FUNCTION audit_store_failing()"
        )
    else:
        sql(
            "CREATE TRIGGER audit_store_failing BEFORE INSERT ON audit_auditevent "
            "BEGIN SELECT RAISE(ABORT, 'audit store failing'); END"
        )
    # No teardown: the test's own transaction rolls the trigger back with everything else.


ACTIONS: dict[str, tuple[Callable[[User, User], Any], Callable[[], int]]] = {
    "api key created": (
        lambda alice, bob: api_key_create(user=bob, name="k", scopes=["chat"], actor=bob),
        ApiKey.objects.count,
    ),
    "team created": (lambda alice, bob: team_create(name="ops", actor=alice), Team.objects.count),
    "model registered": (
        lambda alice, bob: model_register(name="m", actor=alice),
        Model.objects.count,
    ),
    "quota policy saved": (
        lambda alice, bob: quota_policy_save(
            policy=QuotaPolicy(name="p", user=bob, requests_per_minute=5), actor=alice
        ),
        QuotaPolicy.objects.count,
    ),
    "user deactivated": (
        lambda alice, bob: user_deactivate(user=bob, actor=alice),
        lambda: User.objects.filter(is_active=False).count(),
    ),
}


@pytest.mark.parametrize("name", list(ACTIONS))
def test_an_action_whose_audit_insert_fails_does_not_happen(
    name: str, alice: User, bob: User, request: pytest.FixtureRequest
) -> None:
    act, state = ACTIONS[name]
    before = state()
    request.getfixturevalue("audit_store_failing")
    with pytest.raises(DatabaseError, match="audit store failing"), transaction.atomic():
        act(alice, bob)
    assert state() == before


def test_an_api_call_whose_audit_fails_answers_500_and_creates_nothing(
    bob: User, request: pytest.FixtureRequest
) -> None:
    client: APIClient = bearer_client(login(bob).access)
    client.raise_request_exception = False
    request.getfixturevalue("audit_store_failing")
    response = client.post("/api/keys/", {"name": "k", "scopes": ["chat"]}, format="json")
    assert response.status_code == 500
    assert not ApiKey.objects.filter(user=bob).exists()


def _last(action: str) -> AuditEvent:
    return AuditEvent.objects.filter(action=action).order_by("-sequence").first()  # type: ignore[return-value]


def test_a_bulk_update_is_audited_with_the_rows_and_fields(bob: User) -> None:
    keys = [api_key_create(user=bob, name=f"k{n}", scopes=["chat"], actor=bob)[0] for n in range(3)]
    assert ApiKey.objects.filter(user=bob).update(revoked_at=timezone.now()) == 3
    event = _last("accounts.apikey.bulk_updated")
    assert event.metadata["count"] == 3
    assert sorted(event.metadata["ids"]) == sorted(str(key.pk) for key in keys)
    assert event.metadata["fields"] == ["revoked_at"]
    assert event.actor_kind == AuditEvent.ActorKind.SYSTEM


def test_bookkeeping_fields_update_without_an_event(bob: User) -> None:
    api_key_create(user=bob, name="k", scopes=["chat"], actor=bob)
    before = AuditEvent.objects.count()
    ApiKey.objects.filter(user=bob).update(last_used_at=timezone.now())
    assert AuditEvent.objects.count() == before


def test_bulk_create_and_queryset_delete_are_audited(alice: User, bob: User) -> None:
    created = QuotaPolicy.objects.bulk_create(
        [
            QuotaPolicy(name="a", user=bob, requests_per_minute=1),
            QuotaPolicy(name="b", user=bob, requests_per_minute=2),
        ]
    )
    event = _last("accounts.quotapolicy.bulk_created")
    assert sorted(event.metadata["ids"]) == sorted(str(policy.pk) for policy in created)
    model_register(name="doomed", actor=alice)
    Model.objects.filter(name="doomed").delete()
    assert _last("inference.model.bulk_deleted").metadata["count"] == 1
    User.objects.filter(pk=bob.pk).update(is_staff=True)
    assert _last("accounts.user.bulk_updated").metadata["ids"] == [str(bob.pk)]


def test_a_bulk_update_whose_audit_fails_changes_nothing(bob: User, request: pytest.FixtureRequest) -> None:
    api_key_create(user=bob, name="k", scopes=["chat"], actor=bob)
    request.getfixturevalue("audit_store_failing")
    with pytest.raises(DatabaseError, match="audit store failing"), transaction.atomic():
        ApiKey.objects.filter(user=bob).update(revoked_at=timezone.now())
    assert ApiKey.objects.get(user=bob).revoked_at is None


def test_console_edits_reach_the_trail_from_the_admins_change_log(
    client: Client, alice: User, bob: User
) -> None:
    client.force_login(alice)
    added = client.post("/admin/accounts/team/add/", {"name": "research", "description": "R&D"})
    assert added.status_code == 302, added.content[:500]
    team = Team.objects.get(name="research")
    event = _last("console.added")
    assert (event.actor_display, event.target_type, event.target_id) == (
        "alice",
        "accounts.team",
        str(team.pk),
    )
    policy = quota_policy_save(policy=QuotaPolicy(name="old", user=bob, requests_per_minute=5), actor=alice)
    deleted = client.post(f"/admin/accounts/quotapolicy/{policy.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    event = _last("console.deleted")
    assert (event.target_type, event.target_id) == ("accounts.quotapolicy", str(policy.pk))
    assert event.actor_display == "alice"


def test_a_chat_refused_by_policy_is_on_the_trail_and_a_malformed_one_is_not(bob: User) -> None:
    client = bearer_client(login(bob).access)
    refused = client.post(
        "/v1/chat/completions",
        {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]},
        format="json",
    )
    assert refused.status_code == 404
    event = _last("inference.refused")
    assert event.outcome == AuditEvent.Outcome.DENIED
    assert event.actor_display == "bob"
    assert event.metadata == {
        "channel": "api",
        "model": "no-such-model",
        "code": "not_found",
        "reason": event.metadata["reason"],
    }
    before = AuditEvent.objects.count()
    malformed = client.post("/v1/chat/completions", {"model": "x"}, format="json")
    assert malformed.status_code == 400
    assert AuditEvent.objects.count() == before
