"""Writes on SCIM's groups, which are Gatehouse teams: made, renamed, their SCIM members set
and deleted through `accounts.services.teams`. Each function is one transaction: what it
refuses (ScimError: 400, 404 or 409; ValidationError for a value Django refuses) leaves
nothing written.
"""

from django.db import transaction
from django.utils.text import slugify

from accounts.models import Team
from accounts.services import team_create, team_delete, team_member_add, team_member_remove
from accounts.services.teams import team_rename
from audit.models import AuditEvent
from audit.services import audit_event_record
from scim.errors import invalid_value, uniqueness
from scim.group_patch import group_patch_apply
from scim.models import ScimGroup, ScimToken, ScimUser
from scim.patch import PatchOperation
from scim.payloads import GroupAttributes
from scim.selectors import scim_group_get, scim_group_member_links, scim_users_by_ids

_TEAM_NAME_LENGTH = 80


def team_name_for(display_name: str) -> str:
    """The team (a slug) a SCIM group is: "Data Science" -> data-science. A name with no
    letters or digits a slug can hold becomes "scim-group"."""
    return slugify(display_name)[:_TEAM_NAME_LENGTH].strip("-_") or "scim-group"


def _group_checked(*, attributes: GroupAttributes, link: ScimGroup | None) -> dict[str, ScimUser]:
    """Refuse before anything is written: a displayName another SCIM group has, a team name
    another team has (409), a member that is no SCIM user (400). Returns the members by id."""
    others = ScimGroup.objects.filter(display_name__iexact=attributes.display_name)
    if link is not None:
        others = others.exclude(pk=link.pk)
    if others.exists():
        raise uniqueness(f"displayName {attributes.display_name!r} is taken by another group.")
    teams = Team.objects.filter(name=team_name_for(attributes.display_name))
    if link is not None:
        teams = teams.exclude(pk=link.team_id)
    if teams.exists():
        raise uniqueness(
            f"displayName {attributes.display_name!r} names the team "
            f"{team_name_for(attributes.display_name)!r}, which already exists."
        )
    wanted = attributes.member_ids or frozenset()
    found = scim_users_by_ids(ids=set(wanted))
    unknown = sorted(wanted - set(found))
    if unknown:
        raise invalid_value(f"members: no SCIM user has the id {unknown[0]!r}.")
    return found


def _members_set(*, link: ScimGroup, wanted: dict[str, ScimUser], actor_name: str) -> None:
    """The team's SCIM-provisioned members become `wanted`; members added in the console stay."""
    current = {str(key): member for key, member in scim_group_member_links(group=link).items()}
    team = link.team
    for key in sorted(set(wanted) - set(current)):
        team_member_add(team=team, user=wanted[key].user, actor=None, actor_name=actor_name)
    for key in sorted(set(current) - set(wanted)):
        team_member_remove(team=team, user=current[key].user, actor=None, actor_name=actor_name)


@transaction.atomic
def scim_group_create(*, attributes: GroupAttributes, token: ScimToken) -> ScimGroup:
    """Provision a team from a SCIM Group, named after its displayName, with its members.
    Raises ScimError (409 for a taken name, 400 for an unknown member)."""
    members = _group_checked(attributes=attributes, link=None)
    team = team_create(
        name=team_name_for(attributes.display_name),
        description="Provisioned by SCIM.",
        actor=None,
        actor_name=token.audit_display,
    )
    link = ScimGroup.objects.create(
        team=team, display_name=attributes.display_name, external_id=attributes.external_id
    )
    _members_set(link=link, wanted=members, actor_name=token.audit_display)
    return link


def _group_attributes_apply(*, link: ScimGroup, attributes: GroupAttributes, token: ScimToken) -> ScimGroup:
    """Make `link`'s team what `attributes` say: checked first (ScimError 400, 409), then a
    new displayName renames the team, and given members replace the SCIM members."""
    members = _group_checked(attributes=attributes, link=link)
    actor_name = token.audit_display
    changed = []
    if link.display_name != attributes.display_name:
        changed.append("displayName")
        team_rename(
            team=link.team, name=team_name_for(attributes.display_name), actor=None, actor_name=actor_name
        )
        link.display_name = attributes.display_name
    if link.external_id != attributes.external_id:
        changed.append("externalId")
        link.external_id = attributes.external_id
    link.save()  # meta.lastModified
    if changed:
        audit_event_record(
            action="scim.group.updated",
            target=link.team,
            metadata={"fields": changed},
            actor_display=actor_name,
            actor_kind=AuditEvent.ActorKind.SYSTEM,
        )
    if attributes.member_ids is not None:
        _members_set(link=link, wanted=members, actor_name=actor_name)
    return link


@transaction.atomic
def scim_group_replace(*, scim_id: str, attributes: GroupAttributes, token: ScimToken) -> ScimGroup:
    """PUT: displayName (renaming the team), externalId and, when given, the SCIM members.
    Raises ScimError (404, 409, 400 for an unknown member)."""
    link = scim_group_get(scim_id=scim_id, for_update=True)
    return _group_attributes_apply(link=link, attributes=attributes, token=token)


@transaction.atomic
def scim_group_patch(*, scim_id: str, operations: list[PatchOperation], token: ScimToken) -> ScimGroup:
    """PATCH: `operations` applied to the group under a lock, all or nothing. Raises ScimError
    (400 for any bad operation or unknown member, 404, 409)."""
    link = scim_group_get(scim_id=scim_id, for_update=True)
    current = GroupAttributes(
        display_name=link.display_name,
        external_id=link.external_id,
        member_ids=frozenset(str(key) for key in scim_group_member_links(group=link)),
    )
    attributes = group_patch_apply(current, operations, group_id=str(link.id))
    return _group_attributes_apply(link=link, attributes=attributes, token=token)


@transaction.atomic
def scim_group_delete(*, scim_id: str, token: ScimToken) -> None:
    """DELETE: the team goes, with its grants and memberships (`team_delete`). Raises ScimError (404)."""
    link = scim_group_get(scim_id=scim_id, for_update=True)
    team_delete(team=link.team, actor=None, actor_name=token.audit_display)
