"""Console sign-in through a real OpenID Connect provider on loopback (django-oauth-toolkit)."""

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from accounts.models import User
from accounts.roles import Role
from audit.models import AuditEvent
from sso.models import ExternalIdentity
from tests.sso.conftest import corp_with
from tests.sso.oidc_provider import OidcProviderProcess, rsa_private_pem

pytestmark = pytest.mark.django_db


def sign_in(client: Client, provider: OidcProviderProcess, username: str) -> Any:
    """Click "Sign in with Corp ID", sign in at the provider, come back; Gatehouse's answer."""
    start = client.get("/auth/oidc/corp/login/")
    assert start.status_code == 302, start.content[:300]
    back = provider.authorize(provider.browser(username), start["Location"])
    parts = urlsplit(back)
    return client.get(parts.path, parse_qs(parts.query))


def test_the_login_page_offers_each_provider(client: Client, corp: OidcProviderProcess) -> None:
    page = client.get("/admin/login/")
    assert b"Sign in with Corp ID" in page.content
    assert b"/auth/oidc/corp/login/" in page.content


def test_the_start_asks_for_pkce_state_and_nonce(client: Client, corp: OidcProviderProcess) -> None:
    start = client.get("/auth/oidc/corp/login/")
    query = parse_qs(urlsplit(start["Location"]).query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) >= 43
    assert query["state"][0]
    assert query["nonce"][0]
    assert query["redirect_uri"] == ["http://testserver/auth/oidc/corp/callback/"]


def test_a_first_sign_in_creates_the_person_with_the_default_role(
    client: Client, corp: OidcProviderProcess
) -> None:
    subject = corp.person("erin")
    answer = sign_in(client, corp, "erin")
    assert answer.status_code == 302
    erin = User.objects.get(username="erin")
    assert not erin.has_usable_password()
    assert list(erin.groups.values_list("name", flat=True)) == [Role.MEMBER.value]
    assert ExternalIdentity.objects.get(user=erin).subject == subject
    login = AuditEvent.objects.filter(action="auth.login.succeeded", actor_id=erin.pk).get()
    assert login.metadata["method"] == "oidc"
    assert login.metadata["provider"] == "corp"
    assert AuditEvent.objects.filter(action="auth.sso.linked", target_id=str(erin.pk)).exists()


def test_a_replayed_callback_is_refused(client: Client, corp: OidcProviderProcess) -> None:
    corp.person("erin")
    start = client.get("/auth/oidc/corp/login/")
    back = urlsplit(corp.authorize(corp.browser("erin"), start["Location"]))
    assert client.get(back.path, parse_qs(back.query)).status_code == 302
    client.logout()
    replay = client.get(back.path, parse_qs(back.query))
    assert replay.status_code == 403
    assert b"already been used or has expired" in replay.content
    failed = AuditEvent.objects.get(action="auth.sso.failed")
    assert failed.metadata["reason"] == "state_mismatch"


def test_a_forged_state_is_refused(client: Client, corp: OidcProviderProcess) -> None:
    corp.person("erin")
    start = client.get("/auth/oidc/corp/login/")
    back = urlsplit(corp.authorize(corp.browser("erin"), start["Location"]))
    query = parse_qs(back.query)
    query["state"] = ["forged"]
    assert client.get(back.path, query).status_code == 403
    assert not User.objects.filter(username="erin").exists()


def test_an_expired_id_token_is_refused(client: Client, corp: OidcProviderProcess) -> None:
    corp.person("erin")
    corp.token_settings(id_token_expire_seconds=-600)
    try:
        answer = sign_in(client, corp, "erin")
    finally:
        corp.token_settings(id_token_expire_seconds=300)
    assert answer.status_code == 403
    assert b"the ID token has expired" in answer.content
    assert not User.objects.filter(username="erin").exists()
    assert AuditEvent.objects.get(action="auth.sso.failed").metadata["reason"] == "expired"


def test_a_rotated_signing_key_is_fetched_and_trusted(client: Client, corp: OidcProviderProcess) -> None:
    corp.person("erin")
    assert sign_in(client, corp, "erin").status_code == 302  # the keys are now cached
    client.logout()
    corp.token_settings(signing_key_pem=rsa_private_pem())
    answer = sign_in(client, corp, "erin")
    assert answer.status_code == 302, answer.content[:300]
    assert AuditEvent.objects.filter(action="auth.login.succeeded").count() == 2


def test_a_provider_that_cannot_be_reached_is_said_so(
    client: Client, settings: Any, corp: OidcProviderProcess
) -> None:
    from sso.providers import oidc_providers_from_environ

    environ = corp.gatehouse_environ()
    environ["GATEHOUSE_OIDC_CORP_ISSUER"] = "http://127.0.0.1:9/o"
    settings.GATEHOUSE_OIDC_PROVIDERS = oidc_providers_from_environ(environ)
    answer = client.get("/auth/oidc/corp/login/")
    assert answer.status_code == 503
    assert b"could not be reached" in answer.content


def test_an_unknown_provider_is_not_found(client: Client, corp: OidcProviderProcess) -> None:
    assert client.get("/auth/oidc/nope/login/").status_code == 404


def test_a_deactivated_person_cannot_sign_in(client: Client, corp: OidcProviderProcess) -> None:
    from accounts.services.users import user_deactivate

    corp.person("erin")
    assert sign_in(client, corp, "erin").status_code == 302
    client.logout()
    user_deactivate(user=User.objects.get(username="erin"), actor=None)
    answer = sign_in(client, corp, "erin")
    assert answer.status_code == 403
    assert b"disabled" in answer.content


def test_a_local_account_differing_only_in_case_is_not_doubled(
    client: Client, corp: OidcProviderProcess, bob: User
) -> None:
    corp.person("Bob")
    answer = sign_in(client, corp, "Bob")
    assert answer.status_code == 403
    assert not User.objects.filter(username="Bob").exists()


def test_a_local_account_of_the_same_name_is_not_taken_over(
    client: Client, corp: OidcProviderProcess, bob: User
) -> None:
    corp.person("bob")
    answer = sign_in(client, corp, "bob")
    assert answer.status_code == 403
    assert b"already exists in Gatehouse and is not linked" in answer.content
    assert not ExternalIdentity.objects.exists()
    assert "_auth_user_id" not in client.session


def test_without_just_in_time_only_linked_people_sign_in(
    client: Client, settings: Any, corp: OidcProviderProcess, bob: User
) -> None:
    corp_with(settings, corp, JIT="false")
    corp.person("erin")
    assert sign_in(client, corp, "erin").status_code == 403
    sub = corp.person("bob")
    ExternalIdentity.objects.create(user=bob, provider="corp", subject=sub)
    assert sign_in(client, corp, "bob").status_code == 302
    assert client.session["_auth_user_id"] == str(bob.pk)


def test_a_next_url_elsewhere_is_not_followed(client: Client, corp: OidcProviderProcess) -> None:
    corp.person("erin")
    start = client.get("/auth/oidc/corp/login/", {"next": "https://evil.example/"})
    back = urlsplit(corp.authorize(corp.browser("erin"), start["Location"]))
    answer = client.get(back.path, parse_qs(back.query))
    assert answer["Location"] == "/admin/"


def test_a_person_scim_provisioned_signs_in_to_that_account(
    client: Client, corp: OidcProviderProcess
) -> None:
    from accounts.services.users import user_create
    from scim.models import ScimUser

    erin = user_create(username="erin", password=None, roles=[Role.AUDITOR])
    ScimUser.objects.create(user=erin, external_id="00u-erin")
    sub = corp.person("erin")
    assert sign_in(client, corp, "erin").status_code == 302
    assert client.session["_auth_user_id"] == str(erin.pk)
    assert ExternalIdentity.objects.get(user=erin).subject == sub
    linked = AuditEvent.objects.get(action="auth.sso.linked")
    assert linked.metadata["provisioned_by_scim"] is True


def test_a_scim_account_with_a_password_or_another_link_is_not_taken(
    client: Client, corp: OidcProviderProcess
) -> None:
    from accounts.services.users import user_create
    from scim.models import ScimUser
    from tests.conftest import PASSWORD

    erin = user_create(username="erin", password=PASSWORD, roles=[Role.MEMBER])
    ScimUser.objects.create(user=erin)
    corp.person("erin")
    assert sign_in(client, corp, "erin").status_code == 403
    assert not ExternalIdentity.objects.exists()
