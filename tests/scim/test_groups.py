"""SCIM Groups are Gatehouse teams; members are SCIM-provisioned users."""

from typing import Any
from urllib.parse import quote

import pytest

from accounts.models import Team, User
from accounts.services import team_create, team_member_add
from audit.models import AuditEvent
from inference.services import model_access_grant, model_register
from scim.models import ScimGroup, ScimToken
from tests.scim.helpers import (
    GROUPS,
    USERS,
    ScimClient,
    events,
    group_body,
    patch_body,
    scim_error,
    user_body,
)


@pytest.fixture
def ids(scim: ScimClient) -> dict[str, str]:
    """Three SCIM users by userName: SCIM id."""
    made = {}
    for user_name in ("ann", "bea", "cat"):
        response = scim.post(USERS, user_body(user_name))
        assert response.status_code == 201, response.content
        made[user_name] = response.json()["id"]
    return made


def _group(scim: ScimClient, display_name: str, members: list[str] = (), **extra: Any) -> dict[str, Any]:  # type: ignore[assignment]
    response = scim.post(GROUPS, group_body(display_name, members, **extra))
    assert response.status_code == 201, response.content
    return dict(response.json())


def _team_members(team_name: str) -> set[str]:
    return set(Team.objects.get(name=team_name).group.user_set.values_list("username", flat=True))


def _member_names(scim: ScimClient, group_id: str) -> set[str]:
    return {member["display"] for member in scim.get(f"{GROUPS}/{group_id}").json()["members"]}


def test_creating_a_group_makes_a_team_named_after_it_with_its_members(
    scim: ScimClient, ids: dict[str, str], scim_token: tuple[ScimToken, str]
) -> None:
    response = scim.post(GROUPS, group_body("Data Science", [ids["ann"], ids["bea"]], externalId="g-1"))
    assert response.status_code == 201, response.content
    body = response.json()
    assert response["Location"] == body["meta"]["location"]
    assert (body["displayName"], body["externalId"]) == ("Data Science", "g-1")
    assert {member["value"] for member in body["members"]} == {ids["ann"], ids["bea"]}
    assert _team_members("data-science") == {"ann", "bea"}
    (created,) = events("team.created")
    assert created.actor_display == scim_token[0].audit_display
    assert created.actor_kind == AuditEvent.ActorKind.SYSTEM
    assert len(events("team.member.added")) == 2
    # The user's read-only groups name it.
    ann = scim.get(f"{USERS}/{ids['ann']}").json()
    assert ann["groups"] == [
        {
            "value": body["id"],
            "display": "Data Science",
            "$ref": f"http://testserver/scim/v2/Groups/{body['id']}",
            "type": "direct",
        }
    ]


def test_list_filters_on_display_name_and_members(scim: ScimClient, ids: dict[str, str]) -> None:
    engineering = _group(scim, "Engineering", [ids["ann"]])
    _group(scim, "Sales", [ids["bea"]])

    def names(filter_text: str) -> list[str]:
        response = scim.get(f"{GROUPS}?filter={quote(filter_text)}")
        assert response.status_code == 200, response.content
        return sorted(group["displayName"] for group in response.json()["Resources"])

    assert names('displayName eq "engineering"') == ["Engineering"]
    assert names('displayName sw "S"') == ["Sales"]
    assert names(f'members[value eq "{ids["ann"]}"]') == ["Engineering"]
    assert names(f'members.value eq "{ids["cat"]}"') == []
    assert names(f'id eq "{engineering["id"]}" and members[value eq "{ids["ann"]}"]') == ["Engineering"]
    excluded = scim.get(f"{GROUPS}?excludedAttributes=members").json()["Resources"]
    assert all("members" not in group for group in excluded)
    assert len(excluded) == 2
    not_a_group_attribute = quote('userName eq "x"')
    scim_error(scim.get(f"{GROUPS}?filter={not_a_group_attribute}"), 400, "invalidFilter")


def test_patch_adds_and_removes_members_as_okta_and_entra_send_them(
    scim: ScimClient, ids: dict[str, str]
) -> None:
    group = _group(scim, "Engineering", [ids["ann"]])
    path = f"{GROUPS}/{group['id']}"
    added = scim.patch(
        path,
        patch_body({"op": "add", "path": "members", "value": [{"value": ids["bea"]}, {"value": ids["cat"]}]}),
    )
    assert added.status_code == 200, added.content
    assert _team_members("engineering") == {"ann", "bea", "cat"}
    # Okta: remove by a filter path.
    removed = scim.patch(path, patch_body({"op": "remove", "path": f'members[value eq "{ids["bea"]}"]'}))
    assert removed.status_code == 200, removed.content
    assert _team_members("engineering") == {"ann", "cat"}
    # Entra ID: remove with the members as the value ("Remove", capitalised).
    entra = scim.patch(
        path, patch_body({"op": "Remove", "path": "members", "value": [{"value": ids["cat"]}]})
    )
    assert entra.status_code == 200, entra.content
    assert _member_names(scim, group["id"]) == {"ann"}
    replaced = scim.patch(
        path, patch_body({"op": "replace", "path": "members", "value": [{"value": ids["cat"]}]})
    )
    assert replaced.status_code == 200
    assert _team_members("engineering") == {"cat"}
    assert len(events("team.member.removed")) == 3


def test_console_members_are_left_alone(
    scim: ScimClient, ids: dict[str, str], alice: User, bob: User
) -> None:
    group = _group(scim, "Engineering", [ids["ann"]])
    team = Team.objects.get(name="engineering")
    team_member_add(team=team, user=bob, actor=alice)
    assert _member_names(scim, group["id"]) == {"ann"}  # bob is no SCIM user
    scim.patch(f"{GROUPS}/{group['id']}", patch_body({"op": "remove", "path": "members"}))
    assert _team_members("engineering") == {"bob"}


def test_renaming_a_group_renames_its_team_and_keeps_its_grants(
    scim: ScimClient, ids: dict[str, str], alice: User
) -> None:
    group = _group(scim, "Engineering", [ids["ann"]])
    team = Team.objects.get(name="engineering")
    model = model_register(name="m", actor=alice)
    model_access_grant(model=model, grantee=team, actor=alice)
    # Okta renames with a replace that repeats the id.
    response = scim.patch(
        f"{GROUPS}/{group['id']}",
        patch_body({"op": "replace", "value": {"id": group["id"], "displayName": "Platform Eng"}}),
    )
    assert response.status_code == 200, response.content
    assert response.json()["displayName"] == "Platform Eng"
    team.refresh_from_db()
    assert (team.name, team.group.name) == ("platform-eng", "team:platform-eng")
    assert _team_members("platform-eng") == {"ann"}
    from guardian.shortcuts import get_perms

    assert get_perms(team.group, model) == ["use_model"]
    (renamed,) = events("team.renamed")
    assert renamed.metadata == {"before": {"name": "engineering"}, "after": {"name": "platform-eng"}}
    assert events("scim.group.updated")[0].metadata == {"fields": ["displayName"]}
    # A different id in the replace is refused, and nothing changes.
    other = scim.patch(
        f"{GROUPS}/{group['id']}",
        patch_body({"op": "replace", "value": {"id": ids["ann"], "displayName": "Other"}}),
    )
    scim_error(other, 400, "mutability")
    assert ScimGroup.objects.get(pk=group["id"]).display_name == "Platform Eng"


def test_put_replaces_name_external_id_and_members(scim: ScimClient, ids: dict[str, str]) -> None:
    group = _group(scim, "Engineering", [ids["ann"]], externalId="g-1")
    response = scim.put(f"{GROUPS}/{group['id']}", group_body("Engineering", [ids["bea"]]))
    assert response.status_code == 200, response.content
    assert "externalId" not in response.json()
    assert _team_members("engineering") == {"bea"}


def test_an_unknown_member_is_a_400_and_nothing_changes(
    scim: ScimClient, ids: dict[str, str], bob: User
) -> None:
    detail = scim_error(
        scim.post(GROUPS, group_body("Engineering", [ids["ann"], "no-such-user"])), 400, "invalidValue"
    )
    assert "no-such-user" in detail
    assert not Team.objects.filter(name="engineering").exists()
    group = _group(scim, "Sales", [ids["ann"]])
    response = scim.patch(
        f"{GROUPS}/{group['id']}",
        patch_body(
            {"op": "replace", "path": "displayName", "value": "Revenue"},
            {"op": "add", "path": "members", "value": [{"value": ids["bea"]}, {"value": str(bob.pk)}]},
        ),
    )
    scim_error(response, 400, "invalidValue")
    assert ScimGroup.objects.get(pk=group["id"]).display_name == "Sales"
    assert _team_members("sales") == {"ann"}
    assert not events("team.renamed")


def test_a_taken_name_is_a_409(scim: ScimClient, alice: User) -> None:
    team_create(name="research", actor=alice)  # a console team, not SCIM's
    assert "research" in scim_error(scim.post(GROUPS, group_body("Research")), 409, "uniqueness")
    _group(scim, "Sales")
    scim_error(scim.post(GROUPS, group_body("SALES")), 409, "uniqueness")
    other = _group(scim, "Support")
    rename = scim.patch(
        f"{GROUPS}/{other['id']}", patch_body({"op": "replace", "path": "displayName", "value": "Sales"})
    )
    scim_error(rename, 409, "uniqueness")


def test_bad_group_bodies_are_400s(scim: ScimClient) -> None:
    assert "displayName" in scim_error(scim.post(GROUPS, group_body("")), 400, "invalidValue")
    body = group_body("x")
    body["schemas"] = ["urn:ietf:params:scim:schemas:core:2.0:User"]
    scim_error(scim.post(GROUPS, body), 400, "invalidSyntax")
    assert "members" in scim_error(
        scim.post(GROUPS, {**group_body("x"), "members": "ann"}), 400, "invalidValue"
    )


def test_delete_removes_the_team_with_its_memberships(scim: ScimClient, ids: dict[str, str]) -> None:
    group = _group(scim, "Engineering", [ids["ann"]])
    assert scim.delete(f"{GROUPS}/{group['id']}").status_code == 204
    scim_error(scim.get(f"{GROUPS}/{group['id']}"), 404)
    assert not Team.objects.filter(name="engineering").exists()
    assert User.objects.get(username="ann").groups.filter(name__startswith="team:").count() == 0
    assert len(events("team.deleted")) == 1
