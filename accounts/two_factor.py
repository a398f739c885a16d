"""Who must (or may) prove a second factor to enter the console."""

from django.conf import settings
from django_otp import devices_for_user

from accounts.models import User
from accounts.roles import Role, user_holds_role


def two_factor_required(user: User) -> bool:
    """Holders of the admin role, when the deployment turns the requirement on."""
    if not settings.GATEHOUSE_ADMIN_2FA_REQUIRED:
        return False
    return user_holds_role(user, Role.ADMIN)


def two_factor_enrolled(user: User) -> bool:
    return any(True for _ in devices_for_user(user, confirmed=True))
