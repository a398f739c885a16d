"""The provider's OpenID Connect routes under /o/, and the test's controls under /test/.

The controls stand in for the provider's own administration: people and their groups, a
browser session for a person (instead of typing a password), and its token settings.
"""

import json
from typing import Any

from django.contrib.auth import login
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.settings import oauth2_settings

from tests.sso.provider import people


@csrf_exempt
def person_upsert(request: HttpRequest) -> JsonResponse:
    body: dict[str, Any] = json.loads(request.body)
    user, _ = User.objects.get_or_create(username=body["username"])
    user.email = body.get("email", f"{body['username']}@example.com")
    user.save()
    people.PROFILES[user.username] = {"groups": body.get("groups", []), "amr": body.get("amr", [])}
    return JsonResponse({"sub": str(user.pk)})


def browser_login(request: HttpRequest, username: str) -> HttpResponse:
    login(request, User.objects.get(username=username), backend="django.contrib.auth.backends.ModelBackend")
    return (
        HttpResponseRedirect(request.GET.get("next", "/")) if request.GET.get("next") else HttpResponse("ok")
    )


@csrf_exempt
def token_settings(request: HttpRequest) -> JsonResponse:
    """Change how ID tokens are issued from now on: their lifetime, and a new signing key."""
    body: dict[str, Any] = json.loads(request.body)
    if "id_token_expire_seconds" in body:
        oauth2_settings.ID_TOKEN_EXPIRE_SECONDS = int(body["id_token_expire_seconds"])
    if "signing_key_pem" in body:
        # The old key stays published (inactive) while tokens signed with it are still around.
        oauth2_settings.OIDC_RSA_PRIVATE_KEYS_INACTIVE = [oauth2_settings.OIDC_RSA_PRIVATE_KEY]
        oauth2_settings.OIDC_RSA_PRIVATE_KEY = body["signing_key_pem"]
    return JsonResponse({"ok": True})


urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("test/people/", person_upsert),
    path("test/login/<str:username>/", browser_login),
    path("test/token-settings/", token_settings),
]
