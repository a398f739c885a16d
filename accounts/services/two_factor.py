"""Second factors: enrolling an authenticator, recovery codes, removal, an admin's reset, and
which roles must have one.

Anyone enrols their own TOTP authenticator: `totp_enrolment_start` makes an unconfirmed device
(its secret shown once), `totp_enrolment_confirm` confirms it with a current code, and only
then does it count; confirming also issues recovery codes (accounts.recovery_codes, kept
hashed in a `RecoveryCodeDevice`). Removing the factors or regenerating the codes needs a
current code or an unused recovery code. Every change is audited in its own transaction: if
the record cannot be written, nothing changed. A wrong code changes nothing but the device's
own throttle, which is kept.
"""

from base64 import b32encode
from dataclasses import dataclass
from typing import Literal

from django.core.exceptions import ValidationError
from django.db import transaction
from django_otp import devices_for_user
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.enrolment_tokens import enrolment_token_redeem
from accounts.models import RecoveryCodeDevice, TwoFactorRolePolicy, User
from accounts.recovery_codes import RECOVERY_CODE_COUNT, recovery_code_hash, recovery_code_new
from accounts.services.sessions import TokenPair, auth_session_open
from accounts.two_factor import TOTP_CODE, two_factor_enrolled, two_factor_method, two_factor_verify
from audit.audited_writes import audited_delete, audited_save
from audit.services import audit_event_record

Channel = Literal["api", "console"]

ALREADY_ENROLLED = (
    "You already have an authenticator. Remove it first (with a current code) to enrol another."
)
NOTHING_PENDING = "No enrolment is under way: start one first."
WRONG_CONFIRMATION = (
    "That code does not match the new authenticator. Check that its clock is right and send the "
    "code it shows now (after several wrong codes, wait a few seconds between tries)."
)
WRONG_PROOF = "That is neither a current code of your authenticator nor an unused recovery code."
NOT_ENROLLED = "You have no second factor."
TOKEN_USED = "This enrolment token was already used or has expired; log in again."  # noqa: S105 - a message


@dataclass(frozen=True)
class TotpEnrolment:
    """What an authenticator app needs, shown once: the otpauth:// URL and its base32 secret."""

    config_url: str
    secret: str


@dataclass(frozen=True)
class TotpConfirmed:
    device: TOTPDevice
    recovery_codes: list[str]
    # The new session's pair, when the confirmation also logged in (an enrolment token's).
    tokens: TokenPair | None


def _user_locked(user: User) -> None:
    """Serialise second-factor changes of one person (two enrolments racing, say)."""
    User.objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True).first()


def _recovery_codes_replace(*, user: User) -> list[str]:
    """Fresh codes, replacing any earlier ones; returned in the clear, stored only hashed."""
    codes = [recovery_code_new() for _ in range(RECOVERY_CODE_COUNT)]
    hashes = [recovery_code_hash(code.replace("-", "")) for code in codes]
    device = RecoveryCodeDevice.objects.filter(user=user).first()
    if device is None:
        RecoveryCodeDevice.objects.create(
            user=user, name="recovery codes", confirmed=True, code_hashes=hashes
        )
    else:
        device.code_hashes = hashes
        device.save(update_fields=["code_hashes"])
    return codes


def _devices_delete(*, user: User) -> int:
    """Delete every second factor of `user`, pending or confirmed; returns how many."""
    devices = list(devices_for_user(user, confirmed=None))
    for device in devices:
        device.delete()
    return len(devices)


def totp_enrolment_start(*, user: User) -> TotpEnrolment:
    """Start enrolling an authenticator: an unconfirmed TOTP device, which counts for nothing
    until confirmed. An earlier unconfirmed one is replaced.

    Raises ValidationError when `user` already has a confirmed authenticator (it must be
    removed, with a current code, first: a stolen session cannot swap it silently).
    """
    with transaction.atomic():
        _user_locked(user)
        if TOTPDevice.objects.filter(user=user, confirmed=True).exists():
            raise ValidationError(ALREADY_ENROLLED, code="already_enrolled")
        pending = list(TOTPDevice.objects.filter(user=user, confirmed=False))
        for earlier in pending:
            earlier.delete()
        device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=False)
        audit_event_record(
            action="auth.2fa.enrolment.started",
            actor=user,
            target=user,
            metadata={"kind": "totp", "replaced_pending": len(pending)},
        )
    return TotpEnrolment(config_url=str(device.config_url), secret=b32encode(device.bin_key).decode())


def totp_enrolment_confirm(
    *, user: User, code: str, enrolment_token: str | None = None, start_session: bool = False
) -> TotpConfirmed:
    """Confirm the pending authenticator with the code it shows now; from then on it counts,
    and RECOVERY_CODE_COUNT recovery codes replace any earlier ones (returned, to show once).

    With `enrolment_token` (someone who had to enrol before they could log in), the token is
    used up; with `start_session` too, a JWT session begins and `tokens` is its pair.
    Raises ValidationError when nothing is pending, when the code is wrong (nothing is
    confirmed), or when the enrolment token was already used.
    """
    code = code.strip()
    with transaction.atomic():
        _user_locked(user)
        device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()
        if device is None:
            raise ValidationError(NOTHING_PENDING, code="nothing_pending")
        accepted = TOTP_CODE.fullmatch(code) is not None and bool(device.verify_token(code))
        codes: list[str] = []
        tokens = None
        if accepted:
            if enrolment_token is not None and not enrolment_token_redeem(token=enrolment_token):
                raise ValidationError(TOKEN_USED, code="enrolment_token_used")
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            codes = _recovery_codes_replace(user=user)
            audit_event_record(
                action="auth.2fa.enrolment.confirmed",
                actor=user,
                target=user,
                metadata={"kind": "totp", "with_enrolment_token": enrolment_token is not None},
            )
            audit_event_record(
                action="auth.2fa.recovery_codes.generated",
                actor=user,
                target=user,
                metadata={"count": len(codes), "reason": "enrolment"},
            )
            if start_session:
                tokens = auth_session_open(
                    user=user,
                    login={
                        "method": "password",
                        "channel": "api",
                        "second_factor": True,
                        "second_factor_method": "totp",
                        "enrolment": True,
                    },
                )
    # Outside the transaction: a wrong code's throttle count is kept.
    if not accepted:
        raise ValidationError({"code": [WRONG_CONFIRMATION]}, code="wrong_code")
    return TotpConfirmed(device=device, recovery_codes=codes, tokens=tokens)


def two_factor_remove(*, user: User, code: str, channel: Channel) -> int:
    """Remove every second factor of `user` (authenticators and recovery codes), proven with a
    current code or an unused recovery code; returns how many devices went.

    Raises ValidationError when there is nothing to remove or the proof is wrong (then
    nothing is removed). Whoever must have a second factor enrols anew at their next login.
    """
    if not two_factor_enrolled(user):
        raise ValidationError(NOT_ENROLLED, code="not_enrolled")
    removed = 0
    with transaction.atomic():
        device = two_factor_verify(
            user=user, code=code.strip(), metadata={"for": "removal", "channel": channel}
        )
        if device is not None:
            removed = _devices_delete(user=user)
            audit_event_record(
                action="auth.2fa.removed",
                actor=user,
                target=user,
                metadata={"devices": removed, "proof": two_factor_method(device), "channel": channel},
            )
    if device is None:
        raise ValidationError({"otp": [WRONG_PROOF]}, code="wrong_code")
    return removed


def recovery_codes_regenerate(*, user: User, code: str, channel: Channel) -> list[str]:
    """New recovery codes for `user`, proven with a current code or an unused recovery code;
    every earlier code stops working. Returns them, to show once.

    Raises ValidationError when `user` has no second factor or the proof is wrong (then the
    old codes stay).
    """
    if not two_factor_enrolled(user):
        raise ValidationError(NOT_ENROLLED, code="not_enrolled")
    codes: list[str] = []
    with transaction.atomic():
        device = two_factor_verify(
            user=user, code=code.strip(), metadata={"for": "regeneration", "channel": channel}
        )
        if device is not None:
            codes = _recovery_codes_replace(user=user)
            audit_event_record(
                action="auth.2fa.recovery_codes.generated",
                actor=user,
                target=user,
                metadata={"count": len(codes), "reason": "regenerated", "channel": channel},
            )
    if device is None:
        raise ValidationError({"otp": [WRONG_PROOF]}, code="wrong_code")
    return codes


@transaction.atomic
def two_factor_reset(*, user: User, actor: User) -> int:
    """An admin removes every second factor of `user` (a lost phone, say); returns how many
    devices went. They log in with their password alone again, or, where a second factor is
    required of them, are asked to enrol anew. Audited, naming the admin."""
    removed = _devices_delete(user=user)
    audit_event_record(action="auth.2fa.reset", actor=actor, target=user, metadata={"devices": removed})
    return removed


def _policy_state(policy: TwoFactorRolePolicy) -> dict[str, object]:
    return {"role": policy.role.name, "required": policy.required}


def two_factor_role_policy_save(*, policy: TwoFactorRolePolicy, actor: User) -> TwoFactorRolePolicy:
    """Create or change a role's second-factor requirement, audited with before and after.

    Raises ValidationError for a group that is not a role, or a role that has one already.
    """
    return audited_save(instance=policy, actor=actor, action="auth.2fa.role_policy", state=_policy_state)


def two_factor_role_policy_delete(*, policy: TwoFactorRolePolicy, actor: User) -> None:
    audited_delete(instance=policy, actor=actor, action="auth.2fa.role_policy", state=_policy_state)
