"""The five platform roles of SPEC §4, stored as Django groups."""

from enum import StrEnum
from typing import Any


class Role(StrEnum):
    ADMIN = "admin"
    MODEL_MANAGER = "model_manager"
    MEMBER = "member"
    AUDITOR = "auditor"
    COMPLIANCE_OFFICER = "compliance_officer"


def user_holds_role(user: Any, *roles: Role) -> bool:
    """Whether `user` holds any of `roles`; a superuser holds them all."""
    if getattr(user, "is_superuser", False):
        return True
    return bool(user.groups.filter(name__in=[role.value for role in roles]).exists())


def user_role_names(user: Any) -> set[str]:
    """The roles `user` holds by group; a superuser counts as an admin too.

    Unlike `user_holds_role`, a superuser is not taken to hold every role here: a rule made
    for members or auditors (a second factor, no password login) is not a rule for them.
    """
    names = {role.value for role in Role}
    held = set(user.groups.filter(name__in=names).values_list("name", flat=True))
    if getattr(user, "is_superuser", False):
        held.add(Role.ADMIN.value)
    return held
