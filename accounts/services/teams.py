"""Teams: shared model grants for a set of users."""

from django.contrib.auth.models import Group
from django.db import transaction

from accounts.models import Team, User
from audit.services import audit_event_record

TEAM_GROUP_PREFIX = "team:"


@transaction.atomic
def team_create(*, name: str, description: str = "", actor: User | None) -> Team:
    team = Team(name=name, description=description)
    team.full_clean(exclude=["group"])
    team.group = Group.objects.create(name=f"{TEAM_GROUP_PREFIX}{name}")
    team.save()
    audit_event_record(action="team.created", actor=actor, target=team, metadata={"after": {"name": name}})
    return team


@transaction.atomic
def team_member_add(*, team: Team, user: User, actor: User | None) -> None:
    user.groups.add(team.group)
    # About the person, like role changes: their pseudonym and display are erasable.
    audit_event_record(action="team.member.added", actor=actor, target=user, metadata={"team": team.name})


@transaction.atomic
def team_member_remove(*, team: Team, user: User, actor: User | None) -> None:
    user.groups.remove(team.group)
    audit_event_record(action="team.member.removed", actor=actor, target=user, metadata={"team": team.name})


@transaction.atomic
def team_delete(*, team: Team, actor: User | None) -> None:
    """Delete a team with its group, so the team's grants and memberships go too."""
    name, group = team.name, team.group
    audit_event_record(action="team.deleted", actor=actor, target=team, metadata={"before": {"name": name}})
    team.delete()
    group.delete()
