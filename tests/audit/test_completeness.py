"""Every security-relevant action is on the trail, in its own transaction.

If the audit insert fails, the action does not happen: every audited action
(`tests/audit/audited_actions.py`) runs with no transaction around it but its own, with the
database refusing every audit insert, and none of its rows may be left. Bulk writes that skip
the services are audited anyway; console edits arrive through the admin's own change log.
"""

from collections.abc import Iterator

import pytest
from django.db import DatabaseError, connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey, QuotaPolicy, Team, User
from accounts.services import api_key_create, role_groups_ensure
from accounts.services.quotas import quota_policy_save
from audit.models import AuditEvent
from inference.models import Model
from inference.services import model_register
from tests.accounts.helpers import bearer_client, login
from tests.audit.audited_actions import ACTIONS, World
from tests.audit.tampering import sql


@pytest.fixture
def audit_store_failing(transactional_db: None) -> Iterator[None]:
    """Every audit insert fails in the database itself, as a full disk or a revoked grant would
    make it. Installed for real (the test has no outer transaction) and dropped afterwards."""
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
    yield
    if connection.vendor == "postgresql":
        sql("DROP TRIGGER audit_store_failing ON audit_auditevent")
        sql("DROP FUNCTION audit_store_failing()")
    else:
        sql("DROP TRIGGER audit_store_failing")


@pytest.fixture
def world(alice: User, bob: User, monkeypatch: pytest.MonkeyPatch) -> World:
    role_groups_ensure()
    return World(alice=alice, bob=bob, monkeypatch=monkeypatch)


# No outer transaction in these: each action commits (or not) exactly as it does in production,
# so one that commits its own rows before its audit row is written is caught.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", list(ACTIONS))
def test_with_the_trail_working_the_action_is_seen_to_happen(name: str, world: World) -> None:
    prepared = ACTIONS[name](world)
    assert not prepared.happened(), "set up wrongly: the action's effect is there before it ran"
    before = AuditEvent.objects.count()
    prepared.act()
    assert prepared.happened()
    assert AuditEvent.objects.count() > before


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", list(ACTIONS))
def test_an_action_whose_audit_insert_fails_is_not_in_the_database(
    name: str, world: World, request: pytest.FixtureRequest
) -> None:
    prepared = ACTIONS[name](world)
    request.getfixturevalue("audit_store_failing")
    before = AuditEvent.objects.count()
    with pytest.raises(DatabaseError, match="audit store failing"):
        prepared.act()
    assert not prepared.happened(), f"{name}: committed without its audit row"
    assert AuditEvent.objects.count() == before


@pytest.mark.django_db(transaction=True)
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
    return AuditEvent.objects.filter(action=action).order_by("-id").first()  # type: ignore[return-value]


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
