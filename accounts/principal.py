"""Who is calling, and with what credential. One resolver for HTTP and websockets."""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from importlib import import_module
from typing import Any, Literal
from uuid import UUID

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import AccessToken

from accounts.client_ip import ip_in_networks
from accounts.key_material import (
    KEY_SCHEME,
    SecretMatch,
    api_key_parse,
    api_key_secret_hash,
    api_key_secret_match,
)
from accounts.models import ApiKey, RefreshFamily, User
from accounts.session_lifetime import (
    SESSION_LOGIN_AT,
    SESSION_RENEWED_AT,
    session_lifetime_over,
    session_stamp,
)
from gatehouse.local_cache import LocalCache, local_cache_miss

Method = Literal["jwt", "api_key", "session", "ticket"]
# Writing last_used_at once a minute at most keeps key auth from being a write per request.
LAST_USED_RESOLUTION = timedelta(seconds=60)
# Compared against when no key has the prefix, so unknown and wrong keys cost the same.
_ABSENT_KEY_HASH = api_key_secret_hash("absent")


class CredentialRejected(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


SESSION_ENDED = "This session has ended; log in again."
CONSOLE_SESSION_ENDED = "This console session has ended; log in again."


@dataclass(frozen=True)
class Principal:
    """A caller and the credential it hangs on: a connection lives only as long as that does.

    A JWT hangs on its session family and its issue time (`iat`), a console session on its
    session key and the time it was authenticated, an API key on the key. A ticket carries
    the credential of whoever asked for it.
    """

    user: User
    method: Method
    api_key: ApiKey | None = None
    family_id: UUID | None = None
    issued_at: int | None = None
    session_key: str | None = None
    authenticated_at: float | None = None

    def has_scope(self, scope: str) -> bool:
        """Interactive logins may do anything their role allows; API keys only their scopes."""
        return self.api_key is None or scope in self.api_key.scopes

    @property
    def audit_display(self) -> str:
        if self.api_key is not None:
            return f"{self.user.get_username()} (key gk_{self.api_key.prefix})"
        return self.user.get_username()


def principal_from_bearer(*, raw: str, client_ip: str | None) -> Principal:
    """Authenticate an `Authorization: Bearer` credential: an API key by its prefix, else a JWT."""
    if raw.startswith(KEY_SCHEME):
        return principal_from_api_key(raw=raw, client_ip=client_ip)
    return principal_from_access_token(raw=raw)


def principal_from_access_token(*, raw: str) -> Principal:
    try:
        # Checks signature, the pinned algorithm, audience, issuer, expiry and token type.
        token = AccessToken(raw)  # type: ignore[arg-type]
    except TokenError:
        raise CredentialRejected("The access token is invalid or expired.") from None
    family = _family_cached(
        family_id=str(token.get("fam")), user_id=str(token.get(jwt_settings.USER_ID_CLAIM))
    )
    if family is None:
        raise CredentialRejected("The access token is invalid or expired.")
    family_check(family)
    user = family.user
    issued_at = int(token["iat"])
    user_credentials_check(user, issued_at=issued_at)
    return Principal(user=user, method="jwt", family_id=family.id, issued_at=issued_at)


# The request path's reads of credentials, held per process and dropped everywhere on any
# change (gatehouse.local_cache). Only credentials that exist are kept: a flood of made-up
# ones cannot push the real ones out.
_families: LocalCache[tuple[str, str | int], RefreshFamily | None] = LocalCache("session families")
_api_keys: LocalCache[str, ApiKey | None] = LocalCache("API keys by prefix")


def _family_cached(*, family_id: str, user_id: str | int) -> RefreshFamily | None:
    def load() -> RefreshFamily | None:
        try:
            return RefreshFamily.objects.select_related("user").filter(pk=family_id, user_id=user_id).first()
        except (ValueError, ValidationError):  # not a UUID: no such family
            return None

    return _families.fetch((family_id, user_id), load, keep=lambda family: family is not None)


def _api_key_cached(*, prefix: str) -> ApiKey | None:
    return _api_keys.fetch(
        prefix,
        lambda: ApiKey.objects.select_related("user").filter(prefix=prefix).first(),
        keep=lambda key: key is not None,
    )


def family_check(family: RefreshFamily) -> None:
    """Refuse a session family that was ended, or that has outlived GATEHOUSE_SESSION_MAX_AGE."""
    if family.revoked_at is not None or session_lifetime_over(started_at=family.created_at):
        raise CredentialRejected(SESSION_ENDED)


def api_key_check(key: ApiKey, *, now: datetime) -> None:
    """Refuse a key that was revoked, or whose time ran out by `now`."""
    if key.revoked_at is not None:
        raise CredentialRejected("This API key has been revoked.")
    if key.expires_at is not None and key.expires_at <= now:
        raise CredentialRejected("This API key has expired.")


def user_credentials_check(user: User, *, issued_at: int | None) -> None:
    """Refuse a disabled user, or a token issued before their `tokens_valid_after`."""
    if not user.is_active:
        raise CredentialRejected("This account is disabled.")
    # iat has whole-second resolution: compare at that resolution so a login in the same
    # second as a logout-all still works (the logout also revoked every session family).
    valid_after = user.tokens_valid_after
    if issued_at is not None and valid_after is not None and issued_at < int(valid_after.timestamp()):
        raise CredentialRejected(SESSION_ENDED)


def console_session_check(user: User, *, data: Mapping[str, Any] | SessionBase) -> float:
    """Refuse a console session that is over; returns when it was last authenticated.

    Over means: not (or no longer) this user's login, older than GATEHOUSE_SESSION_MAX_AGE
    since its login, or authenticated before the user's `tokens_valid_after` (logout
    everywhere, a password change, deactivation). A session that does not say when it was
    logged in is not trusted.
    """
    user_credentials_check(user, issued_at=None)
    login_at = session_stamp(data.get(SESSION_LOGIN_AT))
    renewed_at = session_stamp(data.get(SESSION_RENEWED_AT)) or login_at
    if data.get(SESSION_KEY) != str(user.pk) or login_at is None or renewed_at is None:
        raise CredentialRejected(CONSOLE_SESSION_ENDED)
    if session_lifetime_over(started_at=login_at):
        raise CredentialRejected(CONSOLE_SESSION_ENDED)
    valid_after = user.tokens_valid_after
    if valid_after is not None and renewed_at < valid_after:
        raise CredentialRejected(CONSOLE_SESSION_ENDED)
    return renewed_at.timestamp()


def principal_from_session(
    *, user: User, session_key: str | None, data: Mapping[str, Any] | SessionBase
) -> Principal:
    """The principal of a console session (its cookie on a websocket handshake, say)."""
    if not session_key:
        raise CredentialRejected(CONSOLE_SESSION_ENDED)
    authenticated_at = console_session_check(user, data=data)
    return Principal(user=user, method="session", session_key=session_key, authenticated_at=authenticated_at)


def _session_data(session_key: str) -> dict[str, Any]:
    """What the session store holds under `session_key` now: empty once logged out or expired."""
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)
    data: dict[str, Any] = store.load()
    return data


def principal_from_api_key(*, raw: str, client_ip: str | None) -> Principal:
    parsed = api_key_parse(raw)
    if parsed is None:
        raise CredentialRejected("The API key is malformed.")
    prefix, secret = parsed
    key = _api_key_cached(prefix=prefix)
    match = api_key_secret_match(secret=secret, expected_hash=key.secret_hash if key else _ABSENT_KEY_HASH)
    if key is None or match is SecretMatch.NONE:
        raise CredentialRejected("The API key is invalid.")
    now = timezone.now()
    api_key_check(key, now=now)
    if key.allowed_networks and not ip_in_networks(address=client_ip, networks=key.allowed_networks):
        raise CredentialRejected("This API key may not be used from this address.")
    user_credentials_check(key.user, issued_at=None)
    if match is SecretMatch.FALLBACK:
        local_cache_miss("API key rehash")  # a write: not on an event loop
        # Imported here: the services import this module for CredentialRejected.
        from accounts.services.api_keys import api_key_rehash

        api_key_rehash(api_key=key, secret=secret)
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        local_cache_miss("API key last use")  # a write, once a minute at most
        ApiKey.objects.filter(pk=key.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
        key.last_used_at = now  # the cached copy too, so the next request does not write again
    return Principal(user=key.user, method="api_key", api_key=key)


def principal_recheck(principal: Principal) -> Principal:
    """Re-validate a principal held by a long-lived connection (each websocket message).

    Raises CredentialRejected once the user is deactivated or deleted, the key revoked or
    expired, the JWT session ended (logout, logout everywhere, a password change, its
    lifetime), or the console session logged out or otherwise over. A principal that hangs on
    no credential at all is refused.
    """
    user: User | None = User.objects.filter(pk=principal.user.pk).first()
    if user is None:  # erased while connected
        raise CredentialRejected("This account no longer exists.")
    user_credentials_check(user, issued_at=principal.issued_at)
    key = principal.api_key
    if key is not None:
        key = ApiKey.objects.filter(pk=key.pk).first()
        if key is None:
            raise CredentialRejected("This API key no longer exists.")
        api_key_check(key, now=timezone.now())
    if principal.family_id is not None:
        family = RefreshFamily.objects.filter(pk=principal.family_id, user=user).first()
        if family is None:
            raise CredentialRejected(SESSION_ENDED)
        family_check(family)
    if principal.session_key is not None:
        console_session_check(user, data=_session_data(principal.session_key))
    elif key is None and principal.family_id is None:
        raise CredentialRejected(SESSION_ENDED)
    return replace(principal, user=user, api_key=key)


def principal_recheck_cached(principal: Principal) -> Principal:
    """`principal_recheck` from this process's caches of keys and session families, which every
    process drops when a credential changes (gatehouse.local_cache): what the /v1 door trusts
    on each request, used for each new chat on an open connection.

    A console session is checked in the database (`principal_recheck`; inside
    `local_caches_only()` it raises `NotCached`). A revocation announced to an open
    connection (`credentials_changed`) is checked with `principal_recheck`: its message may
    arrive before the cache's announcement does.
    """
    if principal.session_key is not None or (principal.api_key is None and principal.family_id is None):
        local_cache_miss("console session recheck")
        return principal_recheck(principal)
    user: User | None = None
    key = principal.api_key
    if key is not None:
        key = _api_key_cached(prefix=key.prefix)
        if key is None or principal.api_key is None or key.pk != principal.api_key.pk:
            raise CredentialRejected("This API key no longer exists.")
        api_key_check(key, now=timezone.now())
        user = key.user
    if principal.family_id is not None:
        family = _family_cached(family_id=str(principal.family_id), user_id=principal.user.pk)
        if family is None:
            raise CredentialRejected(SESSION_ENDED)
        family_check(family)
        user = family.user
    if user is None or user.pk != principal.user.pk:
        raise CredentialRejected("This account no longer exists.")
    user_credentials_check(user, issued_at=principal.issued_at)
    return replace(principal, user=user, api_key=key)
