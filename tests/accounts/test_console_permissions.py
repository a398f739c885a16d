"""Viewing a console page is not changing it: write actions need the change permission."""

from django.test import Client

from accounts.models import ApiKey, User
from accounts.services import api_key_create
from audit.models import AuditEvent


def _console(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_compliance_officer_cannot_deactivate_anyone(alice: User, olga: User) -> None:
    console = _console(olga)
    assert console.get("/admin/accounts/user/").status_code == 200  # she may look
    console.post("/admin/accounts/user/", {"action": "deactivate", "_selected_action": [alice.pk]})
    alice.refresh_from_db()
    assert alice.is_active
    assert not AuditEvent.objects.filter(action="user.deactivated").exists()


def test_the_officer_is_not_offered_write_actions(alice: User, olga: User) -> None:
    page = _console(olga).get("/admin/accounts/user/")
    form = page.context["action_form"]  # None when the page offers no action at all
    offered = {name for name, _label in form.fields["action"].choices if name} if form else set()
    assert not offered & {"deactivate", "activate", "delete_selected"}


def test_revoking_a_key_needs_the_change_permission(alice: User, olga: User) -> None:
    key, _raw = api_key_create(user=alice, name="laptop", scopes=["chat"], actor=alice)
    olga.user_permissions.add(*_permissions("view_apikey"))
    response = _console(olga).post(
        "/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [key.pk]}
    )
    assert response.status_code in (200, 302)
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None
    _console(alice).post("/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None


def _permissions(*codenames: str) -> list[object]:
    from django.contrib.auth.models import Permission

    return list(Permission.objects.filter(codename__in=codenames))
