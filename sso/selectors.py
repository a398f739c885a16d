"""Reads for single sign-on: the mappings of a provider and what a person's groups give."""

from collections.abc import Iterable
from dataclasses import dataclass

from sso.models import ExternalIdentity, GroupMapping


@dataclass(frozen=True)
class MappedAccess:
    """What a person's provider groups give, and what the provider's mappings govern at all."""

    roles: frozenset[str]
    team_ids: frozenset[int]
    governed_roles: frozenset[str]
    governed_team_ids: frozenset[int]


def group_mapping_access(*, provider: str, groups: Iterable[str]) -> MappedAccess:
    """The roles and teams that `groups` map to under `provider`'s mappings."""
    held = set(groups)
    mappings = list(GroupMapping.objects.filter(provider=provider).values_list("group", "role", "team_id"))
    return MappedAccess(
        roles=frozenset(role for group, role, _ in mappings if role and group in held),
        team_ids=frozenset(team for group, _, team in mappings if team is not None and group in held),
        governed_roles=frozenset(role for _, role, _ in mappings if role),
        governed_team_ids=frozenset(team for _, _, team in mappings if team is not None),
    )


def external_identity_get(*, provider: str, subject: str) -> ExternalIdentity | None:
    return ExternalIdentity.objects.select_related("user").filter(provider=provider, subject=subject).first()
