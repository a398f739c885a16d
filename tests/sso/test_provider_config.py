"""Providers come from the environment, and a wrong variable stops the server with its name."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from sso.providers import OidcProvider, oidc_provider_claims_satisfy_mfa, oidc_providers_from_environ

BASE = {
    "GATEHOUSE_OIDC_KEYCLOAK_ISSUER": "https://id.example.com/realms/staff/",
    "GATEHOUSE_OIDC_KEYCLOAK_CLIENT_ID": "gatehouse",
    "GATEHOUSE_OIDC_KEYCLOAK_CLIENT_SECRET": "s3cret",
}


def provider(**extra: str) -> OidcProvider:
    return oidc_providers_from_environ({**BASE, **extra})["keycloak"]


def test_defaults() -> None:
    keycloak = provider()
    assert keycloak.issuer == "https://id.example.com/realms/staff"
    assert keycloak.metadata_url == "https://id.example.com/realms/staff/.well-known/openid-configuration"
    assert keycloak.scopes == ("openid", "email", "profile")
    assert keycloak.label == "Keycloak"
    assert keycloak.jit
    assert keycloak.default_role == "member"
    assert not keycloak.mfa_amr


def test_every_setting_is_read() -> None:
    keycloak = provider(
        GATEHOUSE_OIDC_KEYCLOAK_SCOPES="email groups",
        GATEHOUSE_OIDC_KEYCLOAK_LABEL="Staff login",
        GATEHOUSE_OIDC_KEYCLOAK_JIT="false",
        GATEHOUSE_OIDC_KEYCLOAK_DEFAULT_ROLE="",
        GATEHOUSE_OIDC_KEYCLOAK_GROUPS_CLAIM="roles",
        GATEHOUSE_OIDC_KEYCLOAK_MFA_AMR="mfa, otp",
    )
    assert keycloak.scopes == ("openid", "email", "groups")
    assert keycloak.label == "Staff login"
    assert not keycloak.jit
    assert keycloak.default_role == ""
    assert keycloak.groups_claim == "roles"
    assert keycloak.mfa_amr == {"mfa", "otp"}


def test_nothing_configured_means_no_providers() -> None:
    assert oidc_providers_from_environ({"GATEHOUSE_OIDC_JWKS_MAX_AGE": "60"}) == {}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"GATEHOUSE_OIDC_KEYCLOAK_CLIENT_SECRET": ""}, "CLIENT_SECRET must be too"),
        ({"GATEHOUSE_OIDC_KEYCLOAK_ISSUER": "http://id.example.com"}, "must use https"),
        ({"GATEHOUSE_OIDC_KEYCLOAK_ISSUER": "id.example.com"}, "issuer URL"),
        ({"GATEHOUSE_OIDC_KEYCLOAK_JIT": "maybe"}, "true or false"),
        ({"GATEHOUSE_OIDC_KEYCLOAK_DEFAULT_ROLE": "root"}, "DEFAULT_ROLE must be one of"),
    ],
)
def test_a_wrong_variable_is_named(extra: dict[str, str], message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        provider(**extra)


def test_plain_http_only_on_loopback() -> None:
    assert (
        provider(GATEHOUSE_OIDC_KEYCLOAK_ISSUER="http://127.0.0.1:8080/o").issuer == "http://127.0.0.1:8080/o"
    )


def test_only_the_named_amr_or_acr_values_prove_a_second_factor() -> None:
    keycloak = provider(GATEHOUSE_OIDC_KEYCLOAK_MFA_AMR="otp", GATEHOUSE_OIDC_KEYCLOAK_MFA_ACR="gold")
    assert oidc_provider_claims_satisfy_mfa(keycloak, {"amr": ["pwd", "otp"]})
    assert oidc_provider_claims_satisfy_mfa(keycloak, {"acr": "gold"})
    assert not oidc_provider_claims_satisfy_mfa(keycloak, {"amr": ["pwd"], "acr": "silver"})
    assert not oidc_provider_claims_satisfy_mfa(keycloak, {"amr": "otp"})  # not a list: not trusted
    assert not oidc_provider_claims_satisfy_mfa(provider(), {"amr": ["otp", "mfa"]})


def test_several_providers_each_from_their_own_variables() -> None:
    providers = oidc_providers_from_environ(
        {
            **BASE,
            "GATEHOUSE_OIDC_OKTA_ISSUER": "https://example.okta.com/oauth2/default",
            "GATEHOUSE_OIDC_OKTA_CLIENT_ID": "0oa-gatehouse",
            "GATEHOUSE_OIDC_OKTA_CLIENT_SECRET": "other",
        }
    )
    assert sorted(providers) == ["keycloak", "okta"]
    assert providers["okta"].client_id == "0oa-gatehouse"
    assert providers["keycloak"].client_secret == "s3cret"
