"""The OpenID Connect client of each provider (authlib), with its discovery and keys cached.

authlib runs the authorization code flow: PKCE (S256), a random `state` and `nonce` kept in
the console session and checked once, the code exchanged over the back channel with the
client secret, and the ID token's signature, issuer, audience, expiry and nonce verified
against the provider's published keys. Gatehouse adds two things to its key handling:

- the key set is fetched again once it is older than GATEHOUSE_OIDC_JWKS_MAX_AGE, so a key the
  provider withdrew stops being trusted;
- an ID token naming a key id Gatehouse has not seen makes it fetch the set again at once (the
  provider rotated its key), but at most once a minute per provider, so tokens with made-up key
  ids cannot turn Gatehouse into a client hammering the provider.
"""

import threading
import time
from typing import Any

from authlib.integrations.django_client import DjangoIntegration, DjangoOAuth2App
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from sso.providers import OidcProvider

# Seconds between two forced fetches of one provider's keys (an unknown key id).
FORCED_JWKS_INTERVAL = 60.0
# Each call to the provider (discovery, keys, code exchange) gives up after this long.
PROVIDER_TIMEOUT_SECONDS = 10.0


class OidcClient(DjangoOAuth2App):  # type: ignore[misc]  # authlib has no type hints
    """authlib's Django client with an expiring key set and rate-limited forced refreshes."""

    def __init__(self, provider: OidcProvider) -> None:
        super().__init__(
            DjangoIntegration(provider.name),
            provider.name,
            client_id=provider.client_id,
            client_secret=provider.client_secret,
            server_metadata_url=provider.metadata_url,
            client_kwargs={
                "scope": " ".join(provider.scopes),
                "code_challenge_method": "S256",
                "default_timeout": PROVIDER_TIMEOUT_SECONDS,
            },
        )
        self.provider = provider
        self._keys_lock = threading.Lock()
        self._keys_fetched_at = 0.0
        self._forced_at = 0.0

    def fetch_jwk_set(self, force: bool = False) -> dict[str, Any]:
        with self._keys_lock:
            now = time.monotonic()
            stale = now - self._keys_fetched_at > settings.GATEHOUSE_OIDC_JWKS_MAX_AGE
            cached = self.server_metadata.get("jwks")
            if cached and not stale and not (force and now - self._forced_at >= FORCED_JWKS_INTERVAL):
                return dict(cached)
            if force:
                self._forced_at = now
            keys: dict[str, Any] = super().fetch_jwk_set(force=True)
            self._keys_fetched_at = now
            return keys


_clients: dict[str, OidcClient] = {}
_clients_lock = threading.Lock()


def oidc_client(provider: OidcProvider) -> OidcClient:
    """The one client of `provider` in this process (it holds the cached discovery and keys)."""
    with _clients_lock:
        client = _clients.get(provider.name)
        if client is None or client.provider != provider:
            client = _clients[provider.name] = OidcClient(provider)
        return client


@receiver(setting_changed, dispatch_uid="sso.client.settings")
def _forget_clients(setting: str, **kwargs: Any) -> None:
    if setting == "GATEHOUSE_OIDC_PROVIDERS":
        with _clients_lock:
            _clients.clear()
