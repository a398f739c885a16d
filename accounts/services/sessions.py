"""Login sessions: password login, refresh-token rotation, logout.

Every login starts a `RefreshFamily`; its refresh and access tokens carry the family id
(`fam`). Rotation is single-use under concurrency: racers serialise on a row lock of the
token's outstanding-token row, and the loser finds the token already spent, which is
treated as reuse and ends the whole family (stock simplejwt checks first and blacklists
later, so two racers could both win).
"""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.contrib.auth.models import update_last_login
from django.db import transaction
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied, Throttled, ValidationError
from rest_framework_simplejwt.exceptions import TokenBackendError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.state import token_backend
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.credential_events import credentials_changed_notify
from accounts.enrolment_tokens import ENROLMENT_TOKEN_TTL_SECONDS
from accounts.models import RefreshFamily, User
from accounts.principal import CredentialRejected, user_credentials_check
from accounts.services.login import LoginRefused, login_authenticate
from accounts.services.users import sessions_revoke_all
from accounts.session_lifetime import session_lifetime_over
from accounts.two_factor import two_factor_method
from audit.models import AuditEvent
from audit.services import audit_event_record

_INVALID_REFRESH = "The refresh token is invalid or expired."
USER_ID_CLAIM = jwt_settings.USER_ID_CLAIM


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


def _token_pair(*, user: User, family: RefreshFamily) -> TokenPair:
    refresh = RefreshToken.for_user(user)
    refresh["fam"] = str(family.id)
    return TokenPair(access=str(refresh.access_token), refresh=str(refresh))


@transaction.atomic
def auth_session_open(*, user: User, login: dict[str, Any]) -> TokenPair:
    """Start a session for a user whose login passed: a new refresh family and its first pair.

    `login` says how they logged in (method, channel, second factor...) for the audit row.
    """
    family = RefreshFamily.objects.create(user=user)
    pair = _token_pair(user=user, family=family)
    update_last_login(User, user)
    audit_event_record(
        action="auth.login.succeeded",
        actor=user,
        target=user,
        metadata={**login, "session": str(family.id)},
    )
    return pair


class EnrolmentRequired(PermissionDenied):
    """403 `otp_enrolment_required`, with the enrolment token and its lifetime in seconds."""

    def __init__(self, *, message: str, enrolment_token: str) -> None:
        super().__init__(message, code="otp_enrolment_required")
        # Set after DRF's own init, which would turn the lifetime into text.
        self.detail: Any = {
            "detail": self.detail,
            "code": "otp_enrolment_required",
            "enrolment_token": enrolment_token,
            "expires_in": ENROLMENT_TOKEN_TTL_SECONDS,
        }


def auth_tokens_obtain(
    *, username: str, password: str, client_ip: str | None, otp: str | None = None
) -> TokenPair:
    """Exchange a username, password and, where due, a one-time code for a JWT pair.

    Every attempt is audited. The checks are the login policy's (accounts.services.login),
    shared with the console: a lockout answers 429 with Retry-After, any wrong credential 401
    with one message; after a right password, an account that may not log in with a password
    403 `password_login_disabled`, and one that must enrol a second factor first 403
    `otp_enrolment_required` with an `enrolment_token` that opens the enrolment endpoints only.
    """
    try:
        user = login_authenticate(
            username=username, password=password, otp=otp, client_ip=client_ip, channel="api"
        )
    except LoginRefused as refused:
        if refused.code == "locked":
            raise Throttled(wait=refused.retry_after, detail=refused.message) from None
        if refused.code == "otp_enrolment_required":
            raise EnrolmentRequired(
                message=refused.message, enrolment_token=refused.enrolment_token or ""
            ) from None
        if refused.code == "password_login_disabled":
            raise PermissionDenied({"detail": refused.message, "code": refused.code}) from None
        raise AuthenticationFailed(refused.message, code=refused.code) from None
    device = getattr(user, "otp_device", None)
    return auth_session_open(
        user=user,
        login={
            "method": "password",
            "channel": "api",
            "second_factor": device is not None,
            "second_factor_method": two_factor_method(device),
        },
    )


def _decode_refresh(raw: str) -> dict[str, Any]:
    try:
        # simplejwt's annotation says Token; the backend decodes the encoded string.
        payload: dict[str, Any] = token_backend.decode(raw, verify=True)  # type: ignore[arg-type]
    except TokenBackendError:
        raise AuthenticationFailed(_INVALID_REFRESH) from None
    if (
        payload.get(jwt_settings.TOKEN_TYPE_CLAIM) != "refresh"
        or "fam" not in payload
        or "jti" not in payload
    ):
        raise AuthenticationFailed(_INVALID_REFRESH)
    return payload


def auth_tokens_refresh(*, raw_refresh: str) -> TokenPair:
    """Rotate a refresh token: the old one is spent, a new pair is returned.

    Presenting a spent token again ends the whole session family. Rotation never stretches
    a session past GATEHOUSE_SESSION_MAX_AGE from its login.
    """
    payload = _decode_refresh(raw_refresh)
    with transaction.atomic():
        outstanding = OutstandingToken.objects.select_for_update().filter(jti=payload["jti"]).first()
        family = (
            RefreshFamily.objects.select_for_update(of=("self",))
            .select_related("user")
            .filter(pk=payload["fam"])
            .first()
        )
        if outstanding is None or family is None or str(family.user_id) != str(payload.get(USER_ID_CLAIM)):
            raise AuthenticationFailed(_INVALID_REFRESH)
        if family.revoked_at is not None:
            raise AuthenticationFailed("This session has ended; log in again.")
        if session_lifetime_over(started_at=family.created_at):
            raise AuthenticationFailed("This session has ended; log in again.")
        reused = BlacklistedToken.objects.filter(token=outstanding).exists()
        if reused:
            family.revoked_at = timezone.now()
            family.revoked_reason = "reuse"
            family.save(update_fields=["revoked_at", "revoked_reason"])
            audit_event_record(
                action="auth.refresh.reused",
                actor=family.user,
                target=family.user,
                outcome=AuditEvent.Outcome.DENIED,
                metadata={"session": str(family.id), "jti": payload["jti"]},
            )
        else:
            user = family.user
            try:
                user_credentials_check(user, issued_at=int(payload["iat"]))
            except CredentialRejected as rejected:
                raise AuthenticationFailed(rejected.message) from None
            BlacklistedToken.objects.create(token=outstanding)
            pair = _token_pair(user=user, family=family)
    # Raised after the block so the family's revocation and its audit row commit.
    if reused:
        # Its sockets close now, not at their next frame.
        credentials_changed_notify(user_id=family.user_id)
        raise AuthenticationFailed(
            "This refresh token was already used. The session has been ended to protect the account; log in again."
        )
    return pair


@transaction.atomic
def auth_logout(
    *, user: User, raw_refresh: str | None, everywhere: bool, current_family_id: UUID | None
) -> int:
    """End one session (the refresh token's, else the caller's own) or, with `everywhere`, all.

    Returns how many sessions ended.
    """
    if everywhere:
        ended = sessions_revoke_all(user=user, reason="logout_all")
        audit_event_record(
            action="auth.logout.all", actor=user, target=user, metadata={"sessions_ended": ended}
        )
        return ended
    family_id: Any = current_family_id
    if raw_refresh:
        payload = _decode_refresh(raw_refresh)
        if str(payload.get(USER_ID_CLAIM)) != str(user.pk):
            raise ValidationError({"refresh": ["This refresh token belongs to another account."]})
        family_id = payload["fam"]
        outstanding = OutstandingToken.objects.filter(jti=payload["jti"]).first()
        if outstanding is not None:
            BlacklistedToken.objects.get_or_create(token=outstanding)
    if family_id is None:
        raise ValidationError(
            {"refresh": ['Send the refresh token of the session to end, or {"all": true}.']}
        )
    ended = RefreshFamily.objects.filter(pk=family_id, user=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_reason="logout"
    )
    credentials_changed_notify(user_id=user.pk)
    audit_event_record(action="auth.logout", actor=user, target=user, metadata={"session": str(family_id)})
    return ended
