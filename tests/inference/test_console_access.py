"""The console's model access pages: every grant to a person or team, granted and revoked
through the audited services, with rights that follow the model pages'."""

from django.test import Client

from accounts.models import User
from accounts.roles import Role
from accounts.services import team_create, user_create
from audit.models import AuditEvent
from inference.models import ModelVersion, PersonModelGrant, TeamModelGrant
from inference.selectors import model_list_usable
from inference.services import model_access_grant, model_register

PEOPLE = "/admin/inference/personmodelgrant/"
TEAMS = "/admin/inference/teammodelgrant/"


def _console(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_an_admin_grants_a_person_a_model_and_it_is_audited(alice: User, bob: User) -> None:
    closed = model_register(name="closed-model", actor=alice)
    response = _console(alice).post(f"{PEOPLE}add/", {"model": closed.pk, "user": bob.pk})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert closed in model_list_usable(user=bob)
    assert AuditEvent.objects.filter(
        action="model.access.granted", actor=alice, target_id=str(closed.pk)
    ).exists()
    listed = _console(alice).get(PEOPLE).content.decode()
    assert "closed-model" in listed
    assert ">bob<" in listed


def test_a_second_grant_of_the_same_model_is_refused_with_a_reason(alice: User, bob: User) -> None:
    closed = model_register(name="closed-model", actor=alice)
    model_access_grant(model=closed, grantee=bob, actor=alice)
    response = _console(alice).post(f"{PEOPLE}add/", {"model": closed.pk, "user": bob.pk})
    assert response.status_code == 200
    assert "bob may already use closed-model." in response.content.decode()
    assert AuditEvent.objects.filter(action="model.access.granted").count() == 1


def test_revoking_a_team_grant_goes_through_the_service(alice: User, bob: User) -> None:
    from accounts.services import team_member_add

    closed = model_register(name="closed-model", actor=alice)
    research = team_create(name="research", actor=alice)
    team_member_add(team=research, user=bob, actor=alice)
    console = _console(alice)
    assert console.post(f"{TEAMS}add/", {"model": closed.pk, "team": research.pk}).status_code == 302
    assert closed in model_list_usable(user=bob)
    grant = TeamModelGrant.objects.get(group=research.group)
    listed = console.get(TEAMS).content.decode()
    assert "research" in listed
    response = console.post(TEAMS, {"action": "revoke", "_selected_action": [grant.pk]}, follow=True)
    assert "Revoked 1 grant(s)." in " ".join(str(message) for message in response.context["messages"])
    assert closed not in model_list_usable(user=bob)
    assert AuditEvent.objects.filter(action="model.access.revoked", actor=alice).exists()


def test_the_lists_hold_model_grants_only(alice: User, bob: User, demo_version: ModelVersion) -> None:
    from guardian.shortcuts import assign_perm

    # Another object permission on another kind of object is not a model grant.
    assign_perm("accounts.view_team", bob, team_create(name="elsewhere", actor=alice))
    assert PersonModelGrant.objects.filter(user=bob).exists()
    assert ">bob<" not in _console(alice).get(PEOPLE).content.decode()


def test_rights_follow_the_model_pages(alice: User, bob: User, carol: User) -> None:
    closed = model_register(name="closed-model", actor=alice)
    model_access_grant(model=closed, grantee=bob, actor=alice)
    grant = PersonModelGrant.objects.get(user=bob)
    mia = user_create(
        username="mia", password="a-long-password-42", roles=[Role.MODEL_MANAGER], is_staff=True
    )
    # A model manager may change models, so may grant and revoke.
    assert _console(mia).get(PEOPLE).status_code == 200
    assert _console(mia).get(f"{PEOPLE}add/").status_code == 200
    # A staff auditor sees no model pages at all.
    carol.is_staff = True
    carol.save(update_fields=["is_staff"])
    assert _console(carol).get(PEOPLE).status_code == 403
    refused = _console(carol).post(PEOPLE, {"action": "revoke", "_selected_action": [grant.pk]})
    assert refused.status_code == 403
    assert PersonModelGrant.objects.filter(pk=grant.pk).exists()
    # Grants are never edited in place.
    assert _console(alice).post(f"{PEOPLE}{grant.pk}/change/", {"model": closed.pk}).status_code == 403
    assert PersonModelGrant.objects.get(pk=grant.pk).user == bob


def test_console_forms_refuse_a_post_without_the_csrf_token(alice: User, bob: User) -> None:
    closed = model_register(name="closed-model", actor=alice)
    console = Client(enforce_csrf_checks=True)
    console.force_login(alice)
    refused = console.post(f"{PEOPLE}add/", {"model": closed.pk, "user": bob.pk})
    assert refused.status_code == 403
    assert closed not in model_list_usable(user=bob)
    # The same form, as the console serves it, carries the token and goes through.
    page = console.get(f"{PEOPLE}add/").content.decode()
    token = page.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
    granted = console.post(
        f"{PEOPLE}add/", {"model": closed.pk, "user": bob.pk, "csrfmiddlewaretoken": token}
    )
    assert granted.status_code == 302
    assert closed in model_list_usable(user=bob)
