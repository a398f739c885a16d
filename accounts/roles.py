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
