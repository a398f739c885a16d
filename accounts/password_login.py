"""Whether someone may log in with a password at all, or must use single sign-on.

GATEHOUSE_PASSWORD_LOGIN off turns password login off for everyone;
GATEHOUSE_PASSWORD_LOGIN_DISABLED_ROLES turns it off for holders of those roles (someone
holding several loses it if any of them is listed; a superuser counts as an admin). The
accounts in GATEHOUSE_BREAK_GLASS_USERS always keep it, so the deployment can be reached
when single sign-on cannot. The login policy (accounts.services.login) asks this after a
right password, for both doors.
"""

from django.conf import settings

from accounts.models import User
from accounts.roles import user_role_names


def password_login_allowed(user: User) -> bool:
    if user.get_username() in settings.GATEHOUSE_BREAK_GLASS_USERS:
        return True
    if not settings.GATEHOUSE_PASSWORD_LOGIN:
        return False
    disabled = set(settings.GATEHOUSE_PASSWORD_LOGIN_DISABLED_ROLES)
    return not (disabled and disabled & user_role_names(user))
