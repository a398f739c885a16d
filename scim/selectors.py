"""Reads: SCIM's users, groups and tokens.

Only what SCIM provisioned is visible here: a user or team made in the console, or one
SCIM deprovisioned, is no SCIM resource (404, and absent from lists).
"""

import uuid
from dataclasses import dataclass
from typing import Generic, TypeVar

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Prefetch, Q, QuerySet

from accounts.models import User
from scim.errors import invalid_value, not_found
from scim.filters import FilterAttribute, filter_parse
from scim.models import ScimGroup, ScimToken, ScimUser

USER_FILTER_ATTRIBUTES: dict[str, FilterAttribute] = {
    "id": FilterAttribute("id", "id"),
    "username": FilterAttribute("user__username"),
    "externalid": FilterAttribute("external_id", case_exact=True),
    "emails": FilterAttribute("user__email"),
    "emails.value": FilterAttribute("user__email"),
    "name.givenname": FilterAttribute("user__first_name"),
    "name.familyname": FilterAttribute("user__last_name"),
    "active": FilterAttribute("user__is_active", "boolean"),
    "meta.created": FilterAttribute("created_at", "datetime"),
    "meta.lastmodified": FilterAttribute("updated_at", "datetime"),
}

GROUP_FILTER_ATTRIBUTES: dict[str, FilterAttribute] = {
    "id": FilterAttribute("id", "id"),
    "displayname": FilterAttribute("display_name"),
    "externalid": FilterAttribute("external_id", case_exact=True),
    "members": FilterAttribute("team__group__user__scim_link__id", "id", through_relation=True),
    "members.value": FilterAttribute("team__group__user__scim_link__id", "id", through_relation=True),
    "meta.created": FilterAttribute("created_at", "datetime"),
    "meta.lastmodified": FilterAttribute("updated_at", "datetime"),
}

_M = TypeVar("_M", bound=models.Model)


@dataclass(frozen=True)
class Page(Generic[_M]):
    """One page of a list: `total` matched, `items` from the 1-based `start_index` on."""

    total: int
    start_index: int
    items: list[_M]


def page_bounds(*, start_index: str | None, count: str | None) -> tuple[int, int]:
    """(startIndex, count) from the query string: startIndex from 1 (less is 1), count from 0
    up to GATEHOUSE_SCIM_MAX_PAGE_SIZE (more is that; none is that). Raises ScimError
    (invalidValue) for a value that is not a whole number."""
    cap: int = settings.GATEHOUSE_SCIM_MAX_PAGE_SIZE

    def number(name: str, raw: str | None, default: int) -> int:
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise invalid_value(f"{name} must be a whole number, not {raw[:40]!r}.") from None

    return max(number("startIndex", start_index, 1), 1), min(max(number("count", count, cap), 0), cap)


def _page(queryset: QuerySet[_M], *, start_index: int, count: int) -> Page[_M]:
    total = queryset.count()
    items = list(queryset[start_index - 1 : start_index - 1 + count]) if count else []
    return Page(total=total, start_index=start_index, items=items)


# Where the prefetched related rows go: a user's SCIM-provisioned teams (as their groups), a
# group's SCIM-provisioned members.
USER_TEAMS_ATTR = "scim_team_groups"
GROUP_MEMBERS_ATTR = "scim_members"


def _users() -> QuerySet[ScimUser]:
    teams = Group.objects.filter(team__scim_link__isnull=False).select_related("team__scim_link")
    return ScimUser.objects.select_related("user").prefetch_related(
        Prefetch(
            "user__groups", queryset=teams.order_by("team__scim_link__display_name"), to_attr=USER_TEAMS_ATTR
        )
    )


def _groups(*, with_members: bool) -> QuerySet[ScimGroup]:
    groups = ScimGroup.objects.select_related("team__group")
    if not with_members:
        return groups
    members = User.objects.filter(scim_link__isnull=False).select_related("scim_link").order_by("pk")
    return groups.prefetch_related(
        Prefetch("team__group__user_set", queryset=members, to_attr=GROUP_MEMBERS_ATTR)
    )


def scim_user_list(*, filter_text: str | None, start_index: int, count: int) -> Page[ScimUser]:
    """SCIM users matching `filter_text` (all when None), oldest first. Raises ScimError
    (invalidFilter) for a filter `scim.filters` refuses."""
    query = (
        Q()
        if filter_text is None
        else filter_parse(filter_text, attributes=USER_FILTER_ATTRIBUTES, model=ScimUser)
    )
    return _page(_users().filter(query), start_index=start_index, count=count)


def scim_user_get(*, scim_id: str, for_update: bool = False) -> ScimUser:
    """The SCIM user with id `scim_id`; raises ScimError (404) when there is none, the id is
    not one, or the user was deprovisioned. `for_update` locks the link row (in a transaction)."""
    key = _uuid(scim_id)
    users = ScimUser.objects.select_for_update().select_related("user") if for_update else _users()
    found = users.filter(pk=key).first() if key is not None else None
    if found is None:
        raise not_found("User")
    return found


def scim_group_list(
    *, filter_text: str | None, start_index: int, count: int, with_members: bool = True
) -> Page[ScimGroup]:
    """SCIM groups matching `filter_text` (all when None), oldest first. Raises ScimError
    (invalidFilter) for a filter `scim.filters` refuses."""
    query = (
        Q()
        if filter_text is None
        else filter_parse(filter_text, attributes=GROUP_FILTER_ATTRIBUTES, model=ScimGroup)
    )
    return _page(_groups(with_members=with_members).filter(query), start_index=start_index, count=count)


def scim_group_get(*, scim_id: str, for_update: bool = False, with_members: bool = True) -> ScimGroup:
    """The SCIM group with id `scim_id`; raises ScimError (404) when there is none or the id
    is not one. `for_update` locks the link row (in a transaction)."""
    key = _uuid(scim_id)
    groups = (
        ScimGroup.objects.select_for_update().select_related("team__group")
        if for_update
        else _groups(with_members=with_members)
    )
    found = groups.filter(pk=key).first() if key is not None else None
    if found is None:
        raise not_found("Group")
    return found


def scim_group_member_links(*, group: ScimGroup) -> dict[uuid.UUID, ScimUser]:
    """The SCIM users in `group`'s team, by SCIM id (members added in the console are not)."""
    links = ScimUser.objects.select_related("user").filter(user__groups=group.team.group_id)
    return {link.id: link for link in links}


def scim_users_by_ids(*, ids: set[str]) -> dict[str, ScimUser]:
    """The SCIM users among `ids` (SCIM ids as sent), by the id as sent; unknown ids are absent."""
    parsed = {raw: key for raw in ids if (key := _uuid(raw)) is not None}
    found = {link.id: link for link in ScimUser.objects.select_related("user").filter(pk__in=parsed.values())}
    return {raw: found[key] for raw, key in parsed.items() if key in found}


def scim_user_name_taken(*, user_name: str, except_user: User | None = None) -> bool:
    """Whether any Gatehouse user (SCIM's or not) has `user_name`, in any letter case."""
    users = User.objects.filter(username__iexact=user_name)
    if except_user is not None:
        users = users.exclude(pk=except_user.pk)
    return bool(users.exists())


def scim_token_by_prefix(*, prefix: str) -> ScimToken | None:
    return ScimToken.objects.select_related("created_by").filter(prefix=prefix).first()


def _uuid(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None
