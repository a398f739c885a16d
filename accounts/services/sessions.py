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

from django.contrib.auth import authenticate
from django.contrib.auth.models import update_last_login
from django.db import transaction
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed, Throttled, ValidationError
from rest_framework_simplejwt.exceptions import TokenBackendError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.state import token_backend
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.credential_events import credentials_changed_notify
from accounts.login_throttle import login_failure_record, login_failures_clear, login_lockout_current
from accounts.models import RefreshFamily, User
from accounts.principal import CredentialRejected, user_credentials_check
from accounts.services.users import sessions_revoke_all
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


def login_attempt_subject(*, username: str) -> dict[str, Any]:
    """Audit fields for a failed or blocked login: the account it claimed, when there is one.

    The claimed account is the row's subject, as unauthenticated actor and as target, so its
    pseudonym and key cover the row's name, address and agent: erasing the account reaches
    them. A bare username in the row could never be erased. An unknown username names nobody
    registered and is kept as typed.
    """
    account = User.objects.filter(username=username).first()
    if account is None:
        return {"actor_display": username[:150]}
    return {"actor": account, "actor_kind": AuditEvent.ActorKind.ANONYMOUS, "target": account}


def auth_tokens_obtain(*, username: str, password: str, client_ip: str | None) -> TokenPair:
    """Exchange a username and password for a JWT pair; every attempt is audited.

    Failed attempts are counted per account and per IP; past the limit further attempts
    get 429 with Retry-After until the lockout expires. Django's ModelBackend hashes a
    dummy password for unknown usernames, so the answer takes as long either way.
    """
    lockout = login_lockout_current(username=username, client_ip=client_ip)
    if lockout is not None:
        audit_event_record(
            action="auth.login.blocked",
            **login_attempt_subject(username=username),
            outcome=AuditEvent.Outcome.DENIED,
            metadata={"lockout": lockout.scope, "retry_after": lockout.retry_after_seconds},
        )
        raise Throttled(wait=lockout.retry_after_seconds, detail="Too many failed logins; try again later.")
    user = authenticate(username=username, password=password)
    if not isinstance(user, User):
        audit_event_record(
            action="auth.login.failed",
            **login_attempt_subject(username=username),
            outcome=AuditEvent.Outcome.FAILURE,
            metadata={"method": "password", "channel": "api"},
        )
        triggered = login_failure_record(username=username, client_ip=client_ip)
        if triggered is not None:
            audit_event_record(
                action="auth.login.locked",
                **login_attempt_subject(username=username),
                outcome=AuditEvent.Outcome.DENIED,
                metadata={"lockout": triggered.scope, "seconds": triggered.retry_after_seconds},
            )
        raise AuthenticationFailed("Invalid username or password.", code="invalid_credentials")
    login_failures_clear(username=username)
    with transaction.atomic():
        family = RefreshFamily.objects.create(user=user)
        pair = _token_pair(user=user, family=family)
        update_last_login(User, user)
        audit_event_record(
            action="auth.login.succeeded",
            actor=user,
            target=user,
            metadata={"method": "password", "channel": "api", "session": str(family.id)},
        )
    return pair


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

    Presenting a spent token again ends the whole session family.
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
