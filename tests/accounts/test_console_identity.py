"""Identity in the console: every change made there is a service call, so it is audited."""

from django.test import Client
from rest_framework.test import APIClient

from accounts.models import ApiKey, Team, User
from accounts.services import api_key_create
from audit.models import AuditEvent
from inference.models import Model
from inference.selectors import model_list_usable
from inference.services import model_register
from tests.accounts.helpers import bearer_client, login


def _console(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_an_admin_issues_a_key_for_a_user_and_sees_it_once(alice: User, bob: User) -> None:
    response = _console(alice).post(
        "/admin/accounts/apikey/add/",
        {"user": bob.pk, "name": "batch job", "scopes": ["models:read"], "allowed_networks": ""},
        follow=True,
    )
    assert response.status_code == 200
    shown = [str(message) for message in response.context["messages"]]
    raw = next(text.split(": ", 1)[1] for text in shown if "shown only this once" in text)
    assert bearer_client(raw).get("/v1/models").status_code == 200
    assert ApiKey.objects.get().user == bob
    assert AuditEvent.objects.get(action="apikey.created").actor == alice


def test_an_admin_revokes_anyones_key_from_the_list(alice: User, bob: User) -> None:
    key, raw = api_key_create(user=bob, name="k", scopes=["models:read"], actor=bob)
    _console(alice).post("/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    assert bearer_client(raw).get("/v1/models").status_code == 401
    assert AuditEvent.objects.get(action="apikey.revoked").actor == alice


def test_keys_cannot_be_deleted_in_the_console(alice: User, bob: User) -> None:
    key, _ = api_key_create(user=bob, name="k", scopes=["chat"], actor=bob)
    assert (
        _console(alice).post(f"/admin/accounts/apikey/{key.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    assert ApiKey.objects.filter(pk=key.pk).exists()


def _user_form_post(console: Client, user: User, **changes: object) -> int:
    """Submit the console's user form as shown, with `changes` applied; returns the status."""
    form = console.get(f"/admin/accounts/user/{user.pk}/change/").context["adminform"].form
    data: dict[str, object] = {
        name: value
        for name, value in form.initial.items()
        if value is not None and name not in ("password", "last_login", "date_joined")
    }
    data.update(
        {
            "groups": [group.pk for group in user.groups.all()],
            "user_permissions": [],
            "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
            "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
            **changes,
        }
    )
    return console.post(f"/admin/accounts/user/{user.pk}/change/", data).status_code


def test_deactivating_in_the_user_form_ends_sessions(alice: User, bob: User) -> None:
    pair = login(bob)
    assert _user_form_post(_console(alice), bob, is_active="") == 302
    bob.refresh_from_db()
    assert not bob.is_active
    assert bearer_client(pair.access).get("/api/keys/").status_code == 401
    assert AuditEvent.objects.get(action="user.deactivated").actor == alice


def test_the_deactivate_action_uses_the_service(alice: User, bob: User) -> None:
    pair = login(bob)
    _console(alice).post("/admin/accounts/user/", {"action": "deactivate", "_selected_action": [bob.pk]})
    assert (
        APIClient().post("/api/auth/token/refresh/", {"refresh": pair.refresh}, format="json").status_code
        == 401
    )


def test_team_membership_and_model_access_are_managed_in_the_console(alice: User, bob: User) -> None:
    console = _console(alice)
    response = console.post(
        "/admin/accounts/team/add/", {"name": "research", "description": "", "members": [bob.pk]}
    )
    assert response.status_code == 302
    team = Team.objects.get(name="research")
    assert bob in team.group.user_set.all()
    model = model_register(name="private-model", actor=alice)
    response = console.post(
        f"/admin/inference/model/{model.pk}/change/",
        {
            "name": "private-model",
            "description": "",
            "max_tokens_cap": 512,
            "default_max_tokens": 64,
            "wall_clock_limit_seconds": 120,
            "max_choices": 4,
            "teams_with_access": [team.pk],
            "users_with_access": [],
            "versions-TOTAL_FORMS": 0,
            "versions-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 302
    assert model in model_list_usable(user=bob)
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"team.created", "team.member.added", "model.access.granted"} <= actions
    console.post(
        "/admin/accounts/team/", {"action": "delete_selected", "_selected_action": [team.pk], "post": "yes"}
    )
    assert not Team.objects.exists()
    assert Model.objects.get(pk=model.pk) not in model_list_usable(user=bob)


def test_role_changes_in_the_user_form_are_audited(alice: User, bob: User) -> None:
    from django.contrib.auth.models import Group

    groups = [*bob.groups.values_list("pk", flat=True), Group.objects.get(name="auditor").pk]
    assert _user_form_post(_console(alice), bob, groups=groups) == 302
    event = AuditEvent.objects.get(action="role.granted")
    assert event.metadata == {"role": "auditor"}
    assert event.actor == alice
    assert event.target_id == str(bob.pk)


def test_role_permission_edits_are_audited(alice: User) -> None:
    from django.contrib.auth.models import Group, Permission

    role = Group.objects.get(name="auditor")
    permission = Permission.objects.get(codename="view_model")
    response = _console(alice).post(
        f"/admin/auth/group/{role.pk}/change/",
        {"name": "auditor", "permissions": [*role.permissions.values_list("pk", flat=True), permission.pk]},
    )
    assert response.status_code == 302
    assert AuditEvent.objects.get(action="role.permissions.changed").metadata["added"] == ["view_model"]


def test_roles_carry_their_default_permissions(db: None) -> None:
    from django.contrib.auth.models import Group

    def codenames(role: str) -> set[str]:
        return set(Group.objects.get(name=role).permissions.values_list("codename", flat=True))

    assert codenames("auditor") == {
        "view_auditevent",
        "view_usage_dashboard",
        "view_budget",
        "view_all_spend",
    }
    assert {"add_modelversion", "use_model"} <= codenames("model_manager")
    assert codenames("member") == set()
    assert "change_auditevent" in codenames("admin")  # everything, though the console makes audit read-only
    assert {"add_budget", "change_budget", "delete_budget", "view_all_spend"} <= codenames("admin")
