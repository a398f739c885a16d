from collections.abc import Iterator
from typing import Any

import pytest

from sso.providers import oidc_providers_from_environ
from tests.sso.oidc_provider import OidcProviderProcess

# The Django test client's host: where the provider sends browsers back to Gatehouse.
CALLBACK = "http://testserver/auth/oidc/corp/callback/"


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProviderProcess]:
    provider = OidcProviderProcess(
        workdir=tmp_path_factory.mktemp("oidc-provider"), gatehouse_redirect_uris=[CALLBACK]
    )
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def corp(settings: Any, oidc_provider: OidcProviderProcess) -> OidcProviderProcess:
    """Gatehouse connected to the test provider as `corp`, as an operator's environment would."""
    settings.GATEHOUSE_OIDC_PROVIDERS = oidc_providers_from_environ(oidc_provider.gatehouse_environ())
    return oidc_provider


def corp_with(settings: Any, provider: OidcProviderProcess, **extra: str) -> None:
    """Reconfigure `corp` with more of its variables (MFA_AMR, JIT, DEFAULT_ROLE...)."""
    settings.GATEHOUSE_OIDC_PROVIDERS = oidc_providers_from_environ(provider.gatehouse_environ(**extra))
