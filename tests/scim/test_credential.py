"""SCIM's own credential: accepted only on /scim/v2/, where nothing else is."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from accounts.key_material import api_key_secret_hash
from accounts.models import User
from accounts.services import api_key_create
from scim.models import ScimToken
from scim.services import scim_token_revoke
from tests.accounts.helpers import bearer_client, login
from tests.scim.helpers import USERS, ScimClient, events, scim_error, token_new


def _refused(response: object) -> str:
    detail = scim_error(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")  # type: ignore[index]
    return detail


def test_no_credential_is_a_401_with_a_bearer_challenge(db: None) -> None:
    _refused(ScimClient(None).get(USERS))
    basic = ScimClient(None)
    basic.http.credentials(HTTP_AUTHORIZATION="Basic YWxpY2U6cGFzc3dvcmQ=")
    _refused(basic.get(USERS))


def test_a_wrong_malformed_or_revoked_token_is_a_401(alice: User) -> None:
    token, raw = token_new("okta", alice)
    assert ScimClient(raw).get(USERS).status_code == 200
    prefix = raw.split("_")[1]
    _refused(ScimClient(f"scim_{prefix}_wrong-secret").get(USERS))
    _refused(ScimClient("scim_zzzzzzzzzz_" + "x" * 32).get(USERS))
    _refused(ScimClient("scim_short").get(USERS))
    scim_token_revoke(token=token, actor=alice)
    assert "revoked" in _refused(ScimClient(raw).get(USERS))


def test_logins_api_keys_and_console_sessions_are_refused_on_scim(alice: User) -> None:
    token_new("okta", alice)
    assert "SCIM token" in _refused(bearer_client(login(alice).access).get(USERS))
    _, api_key = api_key_create(user=alice, name="k", scopes=["chat"], actor=alice)
    assert "SCIM token" in _refused(bearer_client(api_key).get(USERS))
    console = Client()
    console.force_login(alice)
    assert console.get("/admin/").status_code == 200
    response = console.get(USERS)
    _refused(response)
    assert console.post(USERS, {}, content_type="application/scim+json").status_code == 401


def test_a_scim_token_is_refused_on_the_api_and_v1(alice: User) -> None:
    _, raw = token_new("okta", alice)
    for path in ("/api/keys/", "/api/usage/", "/api/audit/events/", "/v1/models"):
        response = bearer_client(raw).get(path)
        assert response.status_code == 401, (path, response.content)
    assert (
        bearer_client(raw).post("/api/keys/", {"name": "x", "scopes": ["chat"]}, format="json").status_code
        == 401
    )
    assert response.json()["error"]["type"] == "authentication_error"  # /v1's own shape


def test_only_an_hmac_of_the_secret_is_kept_and_use_is_noted(alice: User) -> None:
    token, raw = token_new("okta", alice)
    _, prefix, secret = raw.split("_", 2)
    stored = ScimToken.objects.get(pk=token.pk)
    assert (stored.prefix, stored.secret_hash) == (prefix, api_key_secret_hash(secret))
    assert secret not in str(ScimToken.objects.filter(pk=token.pk).values().first())
    assert stored.last_used_at is None
    ScimClient(raw).get(USERS)
    assert ScimToken.objects.get(pk=token.pk).last_used_at is not None
    assert not events("accounts.user.bulk_updated")
    assert not events("scim.scimtoken.bulk_updated")


def test_the_command_prints_the_token_once_and_records_who_made_it(alice: User) -> None:
    out = StringIO()
    call_command("scim_token_create", "entra-id", "--by", "alice", stdout=out)
    raw = out.getvalue().strip().splitlines()[-1]
    token = ScimToken.objects.get(name="entra-id")
    assert raw.startswith(f"scim_{token.prefix}_")
    assert (token.created_by, token.revoked_at) == (alice, None)
    assert ScimClient(raw).get(USERS).status_code == 200
    (created,) = events("scim.token.created")
    assert (created.actor_display, created.metadata) == (
        "alice",
        {"name": "entra-id", "prefix": token.prefix},
    )
    with pytest.raises(CommandError, match="No user called"):
        call_command("scim_token_create", "x", "--by", "nobody", stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("scim_token_create", " ", stdout=StringIO())


def test_admins_list_and_revoke_tokens_in_the_console(alice: User) -> None:
    token, raw = token_new("okta", alice)
    console = Client()
    console.force_login(alice)
    page = console.get("/admin/scim/scimtoken/")
    assert page.status_code == 200
    assert f"scim_{token.prefix}_" in page.content.decode()
    assert raw.split("_", 2)[2] not in page.content.decode()
    assert console.get("/admin/scim/scimtoken/add/").status_code == 403
    response = console.post(
        "/admin/scim/scimtoken/", {"action": "revoke", "_selected_action": [token.pk]}, follow=True
    )
    assert response.status_code == 200
    assert ScimToken.objects.get(pk=token.pk).revoked_at is not None
    (revoked,) = events("scim.token.revoked")
    assert revoked.actor_display == "alice"
    _refused(ScimClient(raw).get(USERS))


def test_the_console_page_is_for_admins_only(alice: User, olga: User) -> None:
    token_new("okta", alice)
    console = Client()
    console.force_login(olga)  # staff, a compliance officer: no SCIM permission
    assert console.get("/admin/scim/scimtoken/").status_code == 403


def test_the_shared_resolver_of_http_and_websockets_refuses_a_scim_token(alice: User) -> None:
    from accounts.principal import CredentialRejected, principal_from_bearer

    _, raw = token_new("okta", alice)
    with pytest.raises(CredentialRejected):
        principal_from_bearer(raw=raw, client_ip="127.0.0.1")
