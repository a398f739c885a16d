"""Writes for SCIM provisioning. Import from here; the modules group them by entity.

Every write on people and teams goes through `accounts.services`, and every audit record of
one names the SCIM token that acted (`ScimToken.audit_display`, actor kind "system").
"""

from scim.services.groups import (
    scim_group_create,
    scim_group_delete,
    scim_group_patch,
    scim_group_replace,
    team_name_for,
)
from scim.services.tokens import scim_token_create, scim_token_revoke, scim_token_touch
from scim.services.users import (
    scim_user_create,
    scim_user_deprovision,
    scim_user_patch,
    scim_user_replace,
)

__all__ = [
    "scim_group_create",
    "scim_group_delete",
    "scim_group_patch",
    "scim_group_replace",
    "scim_token_create",
    "scim_token_revoke",
    "scim_token_touch",
    "scim_user_create",
    "scim_user_deprovision",
    "scim_user_patch",
    "scim_user_replace",
    "team_name_for",
]
