"""Reads for identity and access."""

from dataclasses import dataclass

from django.db.models import QuerySet
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import ApiKey, RecoveryCodeDevice, Team, User
from accounts.two_factor import two_factor_enrolled, two_factor_required
from gatehouse.local_cache import LocalCache


def api_key_list(*, user: User) -> QuerySet[ApiKey]:
    """`user`'s own keys, newest first, revoked ones included (they show as revoked)."""
    return ApiKey.objects.filter(user=user).order_by("-created_at")


def api_key_get(*, user: User, key_id: int) -> ApiKey | None:
    """One of `user`'s own keys; None for a key that is not theirs, exactly as for none."""
    return api_key_list(user=user).filter(pk=key_id).first()


# A user's teams, per process, dropped everywhere when memberships change (gatehouse.local_cache).
_teams: LocalCache[int, tuple[int, ...]] = LocalCache("teams by user")


def api_key_model_names(*, api_key: ApiKey) -> list[str]:
    """The names of the models a key is limited to (none: it is not limited)."""
    from inference.models import Model

    if not api_key.model_ids:
        return []
    return sorted(Model.objects.filter(pk__in=api_key.model_ids).values_list("name", flat=True))


def user_team_ids(*, user: User) -> tuple[int, ...]:
    """The ids of the teams `user` is in, in order."""
    return _teams.fetch(
        user.pk,
        lambda: tuple(Team.objects.filter(group__user=user).order_by("pk").values_list("pk", flat=True)),
    )


@dataclass(frozen=True)
class TwoFactorStatus:
    """Where someone stands with second factors; never a secret or a code."""

    enrolled: bool
    required: bool
    totp_confirmed: bool
    totp_pending: bool
    recovery_codes_remaining: int


def two_factor_status(*, user: User) -> TwoFactorStatus:
    """`user`'s own second factors: what they have, what is pending, how many codes are left."""
    totp = list(TOTPDevice.objects.filter(user=user).values_list("confirmed", flat=True))
    recovery = RecoveryCodeDevice.objects.filter(user=user, confirmed=True).first()
    return TwoFactorStatus(
        enrolled=two_factor_enrolled(user),
        required=two_factor_required(user),
        totp_confirmed=any(totp),
        totp_pending=not all(totp),
        recovery_codes_remaining=recovery.remaining if recovery is not None else 0,
    )
