"""Who must (or may) prove a second factor, and checking one.

`two_factor_required` and `two_factor_enrolled` are the questions every login door asks
(the password login policy, the console, single sign-on); `two_factor_verify` checks a
one-time code from an authenticator or a recovery code.
"""

import re
from typing import Any, Literal

from django.conf import settings
from django.db import transaction
from django_otp import devices_for_user
from django_otp.models import Device

from accounts.models import RecoveryCodeDevice, TwoFactorRolePolicy, User
from accounts.recovery_codes import recovery_code_normalise
from accounts.roles import Role, user_holds_role, user_role_names
from audit.services import audit_event_record

SecondFactorMethod = Literal["totp", "recovery_code"]
TOTP_CODE = re.compile(r"[0-9]{6,8}")


def two_factor_required(user: User) -> bool:
    """Whether `user` must have a second factor before any login lets them in.

    True for admins (a superuser counts) while GATEHOUSE_ADMIN_2FA_REQUIRED is on, and for
    anyone holding a role whose second-factor requirement (TwoFactorRolePolicy) is on.
    """
    if settings.GATEHOUSE_ADMIN_2FA_REQUIRED and user_holds_role(user, Role.ADMIN):
        return True
    roles = user_role_names(user)
    return bool(roles) and TwoFactorRolePolicy.objects.filter(required=True, role__name__in=roles).exists()


def two_factor_enrolled(user: User) -> bool:
    """Whether `user` has a confirmed second factor (an authenticator, or recovery codes)."""
    return any(True for _ in devices_for_user(user, confirmed=True))


def two_factor_method(device: Device | None) -> SecondFactorMethod | None:
    """What proved the second factor, for the audit trail: None when nothing did."""
    if device is None:
        return None
    return "recovery_code" if isinstance(device, RecoveryCodeDevice) else "totp"


def two_factor_verify(*, user: User, code: str, metadata: dict[str, Any] | None = None) -> Device | None:
    """The user's device that accepts `code`, or None; each code is good once.

    A code of 6 to 8 digits is tried on the authenticators, a recovery code (`abcde-23456`)
    on the recovery codes only, so neither kind counts as a failure against the other's
    throttle. django-otp's `verify_token` remembers the time step it accepted (a TOTP
    device's `last_t`) and refuses it and every earlier one afterwards; a recovery code is
    struck off. The devices are locked while checked, so two logins racing with one code
    cannot both pass. A recovery code that passes is audited (`auth.2fa.recovery_code.used`,
    with `metadata` and how many are left) in the transaction that strikes it off: if the
    record cannot be written, the code stays unused and the error propagates.
    """
    code = code.strip()
    recovery = recovery_code_normalise(code) is not None
    if not recovery and not TOTP_CODE.fullmatch(code):
        return None
    with transaction.atomic():
        for device in devices_for_user(user, confirmed=True, for_verify=True):
            if isinstance(device, RecoveryCodeDevice) != recovery:
                continue
            if device.verify_token(code):
                if recovery:
                    audit_event_record(
                        action="auth.2fa.recovery_code.used",
                        actor=user,
                        target=user,
                        metadata={**(metadata or {}), "remaining": device.remaining},
                    )
                return device
    return None
