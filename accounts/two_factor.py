"""Who must (or may) prove a second factor to enter the console."""

from django.conf import settings
from django.db import transaction
from django_otp import devices_for_user
from django_otp.models import Device

from accounts.models import User
from accounts.roles import Role, user_holds_role


def two_factor_required(user: User) -> bool:
    """Holders of the admin role, when the deployment turns the requirement on."""
    if not settings.GATEHOUSE_ADMIN_2FA_REQUIRED:
        return False
    return user_holds_role(user, Role.ADMIN)


def two_factor_enrolled(user: User) -> bool:
    return any(True for _ in devices_for_user(user, confirmed=True))


def two_factor_verify(*, user: User, code: str) -> Device | None:
    """The user's authenticator that accepts `code`, or None; each code is good for one login.

    django-otp's `verify_token` remembers the time step it accepted (a TOTP device's `last_t`)
    and refuses that step and every earlier one afterwards, and it counts failures into the
    device's own throttle. The devices are locked while checked, so two logins racing with
    one code cannot both pass.
    """
    with transaction.atomic():
        for device in devices_for_user(user, confirmed=True, for_verify=True):
            if device.verify_token(code):
                return device
    return None
