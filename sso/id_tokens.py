"""ID tokens checked against their provider: signature by a published key, issuer, audience
(our client id), expiry, and, on the console's flow, the nonce Gatehouse sent.

authlib reads and verifies (joserfc underneath); this module names what must be checked and
turns each failure into one refusal whose message says what was wrong, never the token.
"""

from typing import Any

from authlib.integrations.base_client import MismatchingStateError, OAuthError
from authlib.oidc.core import CodeIDToken
from django.conf import settings
from django.http import HttpRequest
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    InvalidTokenError,
    JoseError,
    MissingClaimError,
)
from requests import RequestException

from sso.client import oidc_client
from sso.providers import OidcProvider
from sso.refusals import SsoRefused

_INVALID = "The identity provider's answer could not be verified"


def _claims_options(provider: OidcProvider) -> dict[str, Any]:
    # Built afresh each time: authlib pops entries off the options it is given.
    return {
        "iss": {"essential": True, "value": provider.issuer},
        "aud": {"essential": True, "values": [provider.client_id]},
        "exp": {"essential": True},
        "sub": {"essential": True},
    }


def _why(error: Exception) -> str:
    """A short reason for auditors and the person: which check the token failed."""
    if isinstance(error, ExpiredTokenError):
        return "expired"
    if isinstance(error, BadSignatureError | InvalidKeyIdError):
        return "bad_signature"
    if isinstance(error, InvalidClaimError | MissingClaimError):
        claim = getattr(error, "claim", "") or str(error)
        return {"aud": "wrong_audience", "iss": "wrong_issuer", "nonce": "wrong_nonce"}.get(
            claim, f"claim:{claim}"
        )
    if isinstance(error, InvalidTokenError):
        return "not_yet_valid"
    return "malformed"


def _refusal(error: Exception) -> SsoRefused:
    reason = _why(error)
    text = {
        "expired": "the ID token has expired",
        "bad_signature": "the ID token's signature does not match the provider's keys",
        "wrong_audience": "the ID token was issued to another application",
        "wrong_issuer": "the ID token was issued by another provider",
        "wrong_nonce": "the ID token does not belong to this sign-in",
    }.get(reason, "the ID token is not valid")
    return SsoRefused(code="invalid_token", message=f"{_INVALID}: {text}.", reason=reason)


def id_token_verify(*, provider: OidcProvider, raw: str) -> dict[str, Any]:
    """The claims of an ID token issued to Gatehouse by `provider`; raises `SsoRefused`.

    Used by the API's exchange, where no nonce was sent: the caller must also refuse replays.
    """
    client = oidc_client(provider)
    try:
        claims = client.parse_id_token(
            {"id_token": raw},
            nonce=None,
            claims_cls=CodeIDToken,
            claims_options=_claims_options(provider),
            leeway=settings.GATEHOUSE_OIDC_LEEWAY_SECONDS,
        )
    except (JoseError, ValueError) as error:
        raise _refusal(error) from None
    except (RequestException, RuntimeError) as error:
        raise _provider_unreachable(provider, error) from None
    return dict(claims)


def authorization_code_redeem(*, provider: OidcProvider, request: HttpRequest) -> dict[str, Any]:
    """Finish the console's flow: check `state`, redeem the code with the PKCE verifier, and
    verify the ID token (nonce included). Returns its claims; raises `SsoRefused`.

    The state is kept in the console session and good once: a replayed or forged callback
    finds none and is refused.
    """
    client = oidc_client(provider)
    try:
        token = client.authorize_access_token(
            request,
            claims_options=_claims_options(provider),
            leeway=settings.GATEHOUSE_OIDC_LEEWAY_SECONDS,
        )
    except MismatchingStateError:
        raise SsoRefused(
            code="invalid_token",
            message="This sign-in link has already been used or has expired; start again.",
            reason="state_mismatch",
        ) from None
    except OAuthError as error:
        raise SsoRefused(
            code="invalid_token",
            message=f"The identity provider refused the sign-in ({error.error or 'error'}); start again.",
            reason=f"provider:{error.error}",
        ) from None
    except (JoseError, ValueError) as error:
        raise _refusal(error) from None
    except (RequestException, RuntimeError) as error:
        raise _provider_unreachable(provider, error) from None
    claims = token.get("userinfo")
    if not claims:
        raise SsoRefused(
            code="invalid_token", message=f"{_INVALID}: it sent no ID token.", reason="no_id_token"
        )
    return dict(claims)


def _provider_unreachable(provider: OidcProvider, error: Exception) -> SsoRefused:
    return SsoRefused(
        code="provider_unavailable",
        message=f"The identity provider {provider.label} could not be reached; try again shortly.",
        reason=f"unreachable:{type(error).__name__}",
    )
