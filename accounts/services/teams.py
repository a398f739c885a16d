"""Teams: shared model grants for a set of users.

Every write takes `actor`, the user who acted, or `actor_name` for a caller that is not a
user (a provisioning token); the audit record names whichever was given.
"""

from typing import Any

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.models import Team, User
from audit.models import AuditEvent
from audit.services import audit_event_record

TEAM_GROUP_PREFIX = "team:"


def _actor_of(actor: User | None, actor_name: str) -> dict[str, Any]:
    """The audit record's actor: `actor`, or, when `actor_name` is given and no user acted,
    the system under that name (a provisioning token)."""
    if actor is None and actor_name:
        return {"actor_display": actor_name, "actor_kind": AuditEvent.ActorKind.SYSTEM}
    return {"actor": actor}


@transaction.atomic
def team_create(*, name: str, description: str = "", actor: User | None, actor_name: str = "") -> Team:
    team = Team(name=name, description=description)
    team.full_clean(exclude=["group"])
    team.group = Group.objects.create(name=f"{TEAM_GROUP_PREFIX}{name}")
    team.save()
    audit_event_record(
        action="team.created", target=team, metadata={"after": {"name": name}}, **_actor_of(actor, actor_name)
    )
    return team


@transaction.atomic
def team_rename(*, team: Team, name: str, actor: User | None, actor_name: str = "") -> Team:
    """Rename `team` and its group; members and grants stay (they hang on the group's row).

    Raises ValidationError for a name that is not a slug, or that another team (or group)
    already has.
    """
    before = team.name
    if name == before:
        return team
    if Group.objects.filter(name=f"{TEAM_GROUP_PREFIX}{name}").exists():
        raise ValidationError({"name": f"A group called {TEAM_GROUP_PREFIX}{name} already exists."})
    team.name = name
    try:
        team.full_clean(exclude=["group"])
    except ValidationError:
        team.name = before
        raise
    team.save(update_fields=["name"])
    group = team.group
    group.name = f"{TEAM_GROUP_PREFIX}{name}"
    group.save(update_fields=["name"])
    audit_event_record(
        action="team.renamed",
        target=team,
        metadata={"before": {"name": before}, "after": {"name": name}},
        **_actor_of(actor, actor_name),
    )
    return team


@transaction.atomic
def team_member_add(*, team: Team, user: User, actor: User | None, actor_name: str = "") -> None:
    user.groups.add(team.group)
    # About the person, like role changes: their pseudonym and display are erasable.
    audit_event_record(
        action="team.member.added", target=user, metadata={"team": team.name}, **_actor_of(actor, actor_name)
    )


@transaction.atomic
def team_member_remove(*, team: Team, user: User, actor: User | None, actor_name: str = "") -> None:
    user.groups.remove(team.group)
    audit_event_record(
        action="team.member.removed",
        target=user,
        metadata={"team": team.name},
        **_actor_of(actor, actor_name),
    )


@transaction.atomic
def team_delete(*, team: Team, actor: User | None, actor_name: str = "") -> None:
    """Delete a team with its group, so the team's grants and memberships go too."""
    name, group = team.name, team.group
    audit_event_record(
        action="team.deleted",
        target=team,
        metadata={"before": {"name": name}},
        **_actor_of(actor, actor_name),
    )
    team.delete()
    group.delete()
