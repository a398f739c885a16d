"""Quota policies are managed in the console, and every change is audited."""

from django.test import Client

from accounts.models import QuotaPolicy, User
from audit.models import AuditEvent

URL = "/admin/accounts/quotapolicy/"


def _form(**fields: object) -> dict[str, object]:
    return {
        "name": "bob's tokens",
        "user": "",
        "team": "",
        "api_key": "",
        "role": "",
        "requests_per_minute": "",
        "tokens_per_day": "",
        "tokens_per_month": "",
        "concurrent_streams": "",
        **fields,
    }


def test_an_admin_creates_changes_and_deletes_a_policy_all_audited(
    client: Client, alice: User, bob: User
) -> None:
    client.force_login(alice)
    created = client.post(f"{URL}add/", _form(user=bob.pk, tokens_per_day=1000))
    assert created.status_code == 302, created.content[:500]
    policy = QuotaPolicy.objects.get(user=bob)
    event = AuditEvent.objects.get(action="quota.policy.created")
    assert (event.actor_display, event.metadata["before"]) == ("alice", None)
    assert event.metadata["after"]["tokens_per_day"] == 1000

    assert client.post(f"{URL}{policy.pk}/change/", _form(user=bob.pk, tokens_per_day=500)).status_code == 302
    changed = AuditEvent.objects.get(action="quota.policy.changed")
    assert (changed.metadata["before"]["tokens_per_day"], changed.metadata["after"]["tokens_per_day"]) == (
        1000,
        500,
    )

    assert client.post(f"{URL}{policy.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not QuotaPolicy.objects.exists()
    assert AuditEvent.objects.get(action="quota.policy.deleted").metadata["before"]["tokens_per_day"] == 500


def test_a_policy_needs_one_subject_and_a_limit(client: Client, alice: User, bob: User) -> None:
    client.force_login(alice)
    no_subject = client.post(f"{URL}add/", _form(tokens_per_day=10))
    assert "exactly one of" in no_subject.content.decode()
    no_limit = client.post(f"{URL}add/", _form(user=bob.pk))
    assert "Set at least one limit" in no_limit.content.decode()
    assert not QuotaPolicy.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="quota.").exists()


def test_a_member_cannot_reach_quota_policies(client: Client, bob: User) -> None:
    client.force_login(bob)
    assert client.get(URL).status_code == 302  # to the console login: not staff
