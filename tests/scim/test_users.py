"""SCIM Users: create, read, replace, patch and deprovision, mapped onto Gatehouse's users."""

from typing import Any

from accounts.models import User
from audit.models import AuditEvent
from scim.models import ScimToken, ScimUser
from tests.scim.helpers import (
    SCIM,
    USERS,
    ScimClient,
    events,
    patch_body,
    scim_error,
    user_body,
)


def _created(scim: ScimClient, user_name: str = "dana", **extra: Any) -> dict[str, Any]:
    response = scim.post(USERS, user_body(user_name, **extra))
    assert response.status_code == 201, response.content
    return dict(response.json())


def test_creating_a_user_makes_a_member_with_an_unusable_password(
    scim: ScimClient, scim_token: tuple[ScimToken, str]
) -> None:
    response = scim.post(USERS, user_body("dana", externalId="00u1", password="Hunter2-secret!"))
    assert response.status_code == 201, response.content
    assert response["Content-Type"].startswith(SCIM)
    body = response.json()
    assert response["Location"] == body["meta"]["location"] == f"http://testserver/scim/v2/Users/{body['id']}"
    assert body["userName"] == "dana"
    assert body["name"] == {"formatted": "Dana Scully", "givenName": "Dana", "familyName": "Scully"}
    assert body["emails"] == [{"value": "dana@example.com", "type": "work", "primary": True}]
    assert (body["active"], body["externalId"], body["groups"]) == (True, "00u1", [])
    assert "password" not in body
    user = User.objects.get(username="dana")
    assert (user.first_name, user.last_name, user.email) == ("Dana", "Scully", "dana@example.com")
    # The password sent is ignored: provisioned people sign in with single sign-on.
    assert not user.has_usable_password()
    assert list(user.groups.values_list("name", flat=True)) == ["member"]
    assert ScimUser.objects.get(user=user).external_id == "00u1"
    (created,) = events("user.created", about=user)
    assert created.actor_kind == AuditEvent.ActorKind.SYSTEM
    assert created.actor_display == scim_token[0].audit_display
    assert created.target_id == str(user.pk)


def test_get_returns_the_user_and_an_unknown_id_is_404(scim: ScimClient) -> None:
    created = _created(scim)
    response = scim.get(f"{USERS}/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created
    scim_error(scim.get(f"{USERS}/00000000-0000-0000-0000-000000000000"), 404)
    scim_error(scim.get(f"{USERS}/not-a-uuid"), 404)


def test_users_made_elsewhere_are_not_scim_resources(scim: ScimClient, bob: User) -> None:
    _created(scim)
    listed = scim.get(USERS).json()
    assert [entry["userName"] for entry in listed["Resources"]] == ["dana"]
    assert listed["totalResults"] == 1


def test_a_taken_user_name_is_a_409_in_any_letter_case(scim: ScimClient, bob: User) -> None:
    detail = scim_error(scim.post(USERS, user_body("BOB")), 409, "uniqueness")
    assert "BOB" in detail
    assert User.objects.filter(username__iexact="bob").count() == 1
    _created(scim, "dana")
    scim_error(scim.post(USERS, user_body("dana")), 409, "uniqueness")


def test_a_body_that_is_not_json_is_a_400_that_says_so(scim: ScimClient) -> None:
    detail = scim_error(scim.raw("post", USERS, '{"userName": "dana",'), 400, "invalidSyntax")
    assert "JSON parse error" in detail
    assert not User.objects.filter(username="dana").exists()


def test_a_body_without_the_user_schema_is_a_400_that_names_it(scim: ScimClient) -> None:
    body = user_body("dana")
    body["schemas"] = ["urn:ietf:params:scim:schemas:core:2.0:Group"]
    detail = scim_error(scim.post(USERS, body), 400, "invalidSyntax")
    assert "urn:ietf:params:scim:schemas:core:2.0:User" in detail
    scim_error(scim.post(USERS, ["not", "an", "object"]), 400, "invalidSyntax")


def test_bad_values_are_400s_that_name_the_attribute(scim: ScimClient) -> None:
    assert "userName" in scim_error(scim.post(USERS, user_body("")), 400, "invalidValue")
    assert "active" in scim_error(scim.post(USERS, user_body("dana", active="maybe")), 400, "invalidValue")
    assert "emails" in scim_error(scim.post(USERS, user_body("dana", emails="x@y")), 400, "invalidValue")
    bad_email = user_body("dana", emails=[{"value": "not an address"}])
    assert "email" in scim_error(scim.post(USERS, bad_email), 400, "invalidValue")
    assert "username" in scim_error(scim.post(USERS, user_body("dana smith")), 400, "invalidValue")
    assert not User.objects.filter(username__startswith="dana").exists()


def test_put_replaces_the_kept_attributes_and_keeps_active_when_omitted(scim: ScimClient) -> None:
    created = _created(scim, externalId="00u1")
    body = user_body("dana.scully", name={"givenName": "D."}, emails=[])
    del body["active"]
    response = scim.put(f"{USERS}/{created['id']}", body)
    assert response.status_code == 200, response.content
    user = User.objects.get(scim_link__id=created["id"])
    assert (user.username, user.first_name, user.last_name, user.email) == ("dana.scully", "D.", "", "")
    assert user.is_active
    assert ScimUser.objects.get(pk=created["id"]).external_id == ""
    (updated,) = events("user.updated")
    # Names and addresses are personal: the chained metadata lists attributes, not values.
    assert updated.metadata == {
        "fields": ["emails", "externalId", "name.familyName", "name.givenName", "userName"]
    }
    assert "dana" not in str(updated.metadata)


def test_patch_renames_and_sets_the_work_email(scim: ScimClient) -> None:
    created = _created(scim)
    response = scim.patch(
        f"{USERS}/{created['id']}",
        patch_body(
            {"op": "Replace", "path": "userName", "value": "dana.katherine"},
            {"op": "replace", "path": "name.familyName", "value": "Mulder"},
            {"op": "replace", "path": 'emails[type eq "work"].value', "value": "dk@example.com"},
            {"op": "add", "value": {"name.givenName": "Katherine", "title": "Agent", "displayName": "DK"}},
            {"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:externalId", "value": "x9"},
        ),
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["userName"] == "dana.katherine"
    assert body["name"]["familyName"] == "Mulder"
    assert body["name"]["givenName"] == "Katherine"
    assert body["emails"][0]["value"] == "dk@example.com"
    assert body["externalId"] == "x9"
    assert User.objects.filter(username="dana.katherine", email="dk@example.com").exists()


def test_a_patch_with_one_bad_operation_changes_nothing(scim: ScimClient) -> None:
    created = _created(scim)
    before = scim.get(f"{USERS}/{created['id']}").json()
    response = scim.patch(
        f"{USERS}/{created['id']}",
        patch_body(
            {"op": "replace", "path": "userName", "value": "renamed"},
            {"op": "replace", "path": "active", "value": False},
            {"op": "replace", "path": "nonsense", "value": 1},
        ),
    )
    detail = scim_error(response, 400, "invalidPath")
    assert "Operations[2]" in detail
    assert "nonsense" in detail
    assert scim.get(f"{USERS}/{created['id']}").json() == before
    assert User.objects.get(username="dana").is_active
    assert not events("user.deactivated")
    assert not events("user.updated")


def test_a_patch_that_breaks_a_rule_late_changes_nothing_either(scim: ScimClient, bob: User) -> None:
    """Every operation applies in memory; a userName taken is found before anything is written."""
    created = _created(scim)
    response = scim.patch(
        f"{USERS}/{created['id']}",
        patch_body(
            {"op": "replace", "path": "active", "value": False},
            {"op": "replace", "path": "userName", "value": "bob"},
        ),
    )
    scim_error(response, 409, "uniqueness")
    assert User.objects.get(username="dana").is_active


def test_patch_refuses_read_only_attributes_and_malformed_bodies(scim: ScimClient) -> None:
    created = _created(scim)
    path = f"{USERS}/{created['id']}"
    scim_error(
        scim.patch(path, patch_body({"op": "replace", "path": "groups", "value": []})), 400, "mutability"
    )
    scim_error(scim.patch(path, {"Operations": []}), 400, "invalidSyntax")
    scim_error(scim.patch(path, patch_body({"op": "merge", "path": "active"})), 400, "invalidSyntax")
    scim_error(scim.patch(path, patch_body({"op": "replace", "path": "active"})), 400, "invalidValue")
    scim_error(scim.patch(path, patch_body({"op": "remove"})), 400, "noTarget")
    scim_error(scim.patch(path, patch_body({"op": "remove", "path": "userName"})), 400, "invalidValue")


def test_delete_deprovisions_deactivates_and_keeps_the_row(
    scim: ScimClient, scim_token: tuple[ScimToken, str]
) -> None:
    created = _created(scim)
    response = scim.delete(f"{USERS}/{created['id']}")
    assert response.status_code == 204
    scim_error(scim.get(f"{USERS}/{created['id']}"), 404)
    scim_error(scim.delete(f"{USERS}/{created['id']}"), 404)
    user = User.objects.get(username="dana")  # kept: the audit trail refers to it
    assert not user.is_active
    assert not ScimUser.objects.filter(user=user).exists()
    (deactivated,) = events("user.deactivated")
    (deprovisioned,) = events("scim.user.deprovisioned")
    for event in (deactivated, deprovisioned):
        assert event.actor_display == scim_token[0].audit_display
        assert event.target_id == str(user.pk)
    # The name stays taken: provisioning it again is a conflict, not a takeover of the old row.
    scim_error(scim.post(USERS, user_body("dana")), 409, "uniqueness")


def test_attributes_and_excluded_attributes_trim_the_resource(scim: ScimClient) -> None:
    created = _created(scim)
    only = scim.get(f"{USERS}/{created['id']}?attributes=userName,name.givenName").json()
    assert set(only) == {"schemas", "id", "meta", "userName", "name"}
    without = scim.get(f"{USERS}?excludedAttributes=groups,emails").json()["Resources"][0]
    assert "groups" not in without
    assert "emails" not in without
    assert "userName" in without
