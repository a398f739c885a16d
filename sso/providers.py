"""OpenID Connect providers, configured from the environment only.

One provider per `GATEHOUSE_OIDC_<NAME>_ISSUER`; its other variables share the prefix:

- `_CLIENT_ID` (required) and `_CLIENT_SECRET` (required: Gatehouse is a confidential client);
- `_SCOPES` (default `openid email profile`; `openid` is always asked for);
- `_LABEL`: the console button's text (default the name);
- `_USERNAME_CLAIM` (default `preferred_username`, then `email`), `_GROUPS_CLAIM` (default `groups`);
- `_JIT` (default true): create a person on their first sign-in; off, only linked people sign in;
- `_DEFAULT_ROLE` (default `member`): the role of a new person no mapping gives one; empty refuses
  people whom no mapping matches;
- `_MFA_AMR` / `_MFA_ACR`: comma-separated `amr` / `acr` values that prove the provider asked for
  a second factor (for example `mfa,otp,hwk`); when one is present, a role that requires a second
  factor is satisfied without Gatehouse's own. Empty (the default): never.

The settings module parses these once (`oidc_providers_from_environ`); code reads them from
`settings.GATEHOUSE_OIDC_PROVIDERS` through `oidc_provider_get`. An issuer must be https, except
on a loopback address (RFC 8252 §8.3), because every key and token is fetched from it.
"""

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from accounts.roles import Role

_PREFIX = "GATEHOUSE_OIDC_"
_ISSUER_VAR = re.compile(rf"^{_PREFIX}([A-Z0-9]+)_ISSUER$")
_ROLES = tuple(role.value for role in Role)


@dataclass(frozen=True)
class OidcProvider:
    """One configured provider; `name` is lower case and appears in URLs and audit rows."""

    name: str
    label: str
    issuer: str
    client_id: str
    client_secret: str
    scopes: tuple[str, ...]
    username_claim: str
    groups_claim: str
    jit: bool
    default_role: str
    mfa_amr: frozenset[str]
    mfa_acr: frozenset[str]

    @property
    def metadata_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"


def _words(raw: str) -> tuple[str, ...]:
    return tuple(word for word in re.split(r"[\s,]+", raw.strip()) if word)


def _flag(name: str, raw: str | None, *, default: bool) -> bool:
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}.")


def _issuer_check(name: str, issuer: str) -> str:
    parts = urlsplit(issuer)
    if parts.scheme not in {"https", "http"} or not parts.hostname or parts.query or parts.fragment:
        raise ImproperlyConfigured(
            f"{name} must be the provider's issuer URL, such as https://id.example.com."
        )
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ImproperlyConfigured(
            f"{name} must use https: keys and tokens are fetched from it. Plain http is allowed "
            "only on a loopback address."
        )
    return issuer.rstrip("/")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def oidc_providers_from_environ(environ: Mapping[str, str]) -> dict[str, OidcProvider]:
    """Every provider the environment configures, by name; ImproperlyConfigured says what is wrong."""
    providers: dict[str, OidcProvider] = {}
    for variable in sorted(environ):
        match = _ISSUER_VAR.fullmatch(variable)
        if match is None:
            continue
        upper = match.group(1)
        prefix = f"{_PREFIX}{upper}_"

        def read(suffix: str, default: str = "", *, prefix: str = prefix) -> str:
            return environ.get(prefix + suffix, default).strip()

        client_id, client_secret = read("CLIENT_ID"), read("CLIENT_SECRET")
        if not client_id or not client_secret:
            raise ImproperlyConfigured(
                f"{prefix}ISSUER is set, so {prefix}CLIENT_ID and {prefix}CLIENT_SECRET must be too."
            )
        # Set but empty means "no default": people whom no mapping matches are refused.
        default_role = read("DEFAULT_ROLE") if prefix + "DEFAULT_ROLE" in environ else "member"
        if default_role and default_role not in _ROLES:
            raise ImproperlyConfigured(f"{prefix}DEFAULT_ROLE must be one of {', '.join(_ROLES)}, or empty.")
        scopes = _words(read("SCOPES", "openid email profile"))
        name = upper.lower()
        providers[name] = OidcProvider(
            name=name,
            label=read("LABEL") or upper.title(),
            issuer=_issuer_check(variable, environ[variable].strip()),
            client_id=client_id,
            client_secret=client_secret,
            scopes=scopes if "openid" in scopes else ("openid", *scopes),
            username_claim=read("USERNAME_CLAIM", "preferred_username"),
            groups_claim=read("GROUPS_CLAIM", "groups"),
            jit=_flag(prefix + "JIT", environ.get(prefix + "JIT"), default=True),
            default_role=default_role,
            mfa_amr=frozenset(_words(read("MFA_AMR"))),
            mfa_acr=frozenset(_words(read("MFA_ACR"))),
        )
    return providers


def oidc_providers() -> dict[str, OidcProvider]:
    configured: dict[str, OidcProvider] = getattr(settings, "GATEHOUSE_OIDC_PROVIDERS", {})
    return configured


def oidc_provider_get(name: str) -> OidcProvider | None:
    """The provider called `name`, or None when none is configured under it."""
    return oidc_providers().get(name)


def oidc_provider_claims_satisfy_mfa(provider: OidcProvider, claims: Mapping[str, Any]) -> bool:
    """Whether the ID token says the provider itself asked for a second factor (amr or acr)."""
    amr = claims.get("amr")
    methods = {str(value) for value in amr} if isinstance(amr, list) else set()
    if provider.mfa_amr & methods:
        return True
    acr = claims.get("acr")
    return isinstance(acr, str) and acr in provider.mfa_acr
