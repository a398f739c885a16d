"""Writes for identity and access. Import from here; the modules group them by entity."""

from accounts.services.api_keys import api_key_create, api_key_revoke
from accounts.services.sessions import TokenPair, auth_logout, auth_tokens_obtain, auth_tokens_refresh
from accounts.services.teams import team_create, team_delete, team_member_add, team_member_remove
from accounts.services.users import (
    AdminEnsured,
    admin_ensure,
    group_membership_changes_record,
    role_groups_ensure,
    sessions_revoke_all,
    two_factor_enroll,
    user_activate,
    user_create,
    user_deactivate,
    user_roles_set,
)

__all__ = [
    "AdminEnsured",
    "TokenPair",
    "admin_ensure",
    "api_key_create",
    "api_key_revoke",
    "auth_logout",
    "auth_tokens_obtain",
    "auth_tokens_refresh",
    "group_membership_changes_record",
    "role_groups_ensure",
    "sessions_revoke_all",
    "team_create",
    "team_delete",
    "team_member_add",
    "team_member_remove",
    "two_factor_enroll",
    "user_activate",
    "user_create",
    "user_deactivate",
    "user_roles_set",
]
