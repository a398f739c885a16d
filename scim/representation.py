"""Gatehouse's users and teams as SCIM resources (RFC 7643 §4), and the `attributes` /
`excludedAttributes` query parameters (RFC 7644 §3.9) applied to them."""

from datetime import datetime
from typing import Any

from django.contrib.auth.models import Group

from accounts.models import User
from scim.documents import GROUP_SCHEMA, USER_SCHEMA
from scim.filters import attribute_name
from scim.models import ScimGroup, ScimUser
from scim.selectors import GROUP_MEMBERS_ATTR, USER_TEAMS_ATTR

# Returned whatever `attributes` asks for (RFC 7643 §7, "returned": "always").
_ALWAYS = {"schemas", "id", "meta"}


def _timestamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _meta(resource_type: str, *, created: datetime, modified: datetime, location: str) -> dict[str, str]:
    return {
        "resourceType": resource_type,
        "created": _timestamp(created),
        "lastModified": _timestamp(modified),
        "location": location,
    }


def _user_teams(user: User) -> list[Group]:
    prefetched: list[Group] | None = getattr(user, USER_TEAMS_ATTR, None)
    if prefetched is not None:
        return prefetched
    return list(
        user.groups.filter(team__scim_link__isnull=False)
        .select_related("team__scim_link")
        .order_by("team__scim_link__display_name")
    )


def user_display_name(user: User) -> str:
    return user.get_full_name() or user.get_username()


def user_resource(link: ScimUser, *, base_url: str) -> dict[str, Any]:
    """`link`'s user as a SCIM User; `base_url` is the absolute URL of /scim/v2."""
    user = link.user
    resource: dict[str, Any] = {"schemas": [USER_SCHEMA], "id": str(link.id)}
    if link.external_id:
        resource["externalId"] = link.external_id
    resource["userName"] = user.get_username()
    name = {
        key: value
        for key, value in (
            ("formatted", user.get_full_name()),
            ("givenName", user.first_name),
            ("familyName", user.last_name),
        )
        if value
    }
    if name:
        resource["name"] = name
    resource["displayName"] = user_display_name(user)
    if user.email:
        resource["emails"] = [{"value": user.email, "type": "work", "primary": True}]
    resource["active"] = user.is_active
    resource["groups"] = [
        {
            "value": str(group.team.scim_link.id),
            "display": group.team.scim_link.display_name,
            "$ref": f"{base_url}/Groups/{group.team.scim_link.id}",
            "type": "direct",
        }
        for group in _user_teams(user)
    ]
    resource["meta"] = _meta(
        "User", created=link.created_at, modified=link.updated_at, location=f"{base_url}/Users/{link.id}"
    )
    return resource


def _group_members(link: ScimGroup) -> list[User]:
    prefetched: list[User] | None = getattr(link.team.group, GROUP_MEMBERS_ATTR, None)
    if prefetched is not None:
        return prefetched
    return list(
        link.team.group.user_set.filter(scim_link__isnull=False).select_related("scim_link").order_by("pk")
    )


def group_resource(link: ScimGroup, *, base_url: str, with_members: bool = True) -> dict[str, Any]:
    """`link`'s team as a SCIM Group: its SCIM-provisioned members only."""
    resource: dict[str, Any] = {"schemas": [GROUP_SCHEMA], "id": str(link.id)}
    if link.external_id:
        resource["externalId"] = link.external_id
    resource["displayName"] = link.display_name
    if with_members:
        resource["members"] = [
            {
                "value": str(user.scim_link.id),
                "display": user.get_username(),
                "$ref": f"{base_url}/Users/{user.scim_link.id}",
                "type": "User",
            }
            for user in _group_members(link)
        ]
    resource["meta"] = _meta(
        "Group", created=link.created_at, modified=link.updated_at, location=f"{base_url}/Groups/{link.id}"
    )
    return resource


def attribute_names(raw: str | None) -> set[str]:
    """The top-level attribute names in a comma-separated `attributes` parameter, in lower
    case (`name.givenName` counts as `name`; a core schema's URN prefix is dropped)."""
    if not raw:
        return set()
    return {attribute_name(part.strip()).split(".")[0] for part in raw.split(",") if part.strip()}


def resource_selected(
    resource: dict[str, Any], *, attributes: set[str], excluded: set[str]
) -> dict[str, Any]:
    """`resource` with only `attributes` (when given) and without `excluded`; id, schemas
    and meta always stay."""
    return {
        key: value
        for key, value in resource.items()
        if key.lower() in _ALWAYS
        or ((not attributes or key.lower() in attributes) and key.lower() not in excluded)
    }
