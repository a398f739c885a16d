"""The console's single sign-on: start at the provider, come back, give a code if one is due.

The views parse and answer; the checks live in `sso.id_tokens` and `sso.services`. A sign-in
that needs Gatehouse's own second factor is parked in the session (who, from which provider,
until when) and finished on the code page; nothing is signed in before the code is right.
"""

import time
from typing import Any

from django import forms
from django.contrib import auth
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods
from django_otp import login as otp_login

from accounts.api.serializers import OTP_INVALID
from accounts.authentication import request_client_ip
from accounts.models import User
from accounts.recovery_codes import RECOVERY_CODE_TYPED
from gatehouse.console.two_factor import console_enrolment_hold
from sso.client import oidc_client
from sso.id_tokens import authorization_code_redeem
from sso.providers import OidcProvider, oidc_provider_get
from sso.refusals import SsoRefused
from sso.second_factor import SSO_MFA_SESSION_KEY
from sso.services import SsoSignIn, sso_failure_record, sso_second_factor_check, sso_sign_in

_NEXT = "gatehouse_sso_next"
_PENDING = "gatehouse_sso_pending"
# How long a parked sign-in waits for its one-time code.
PENDING_SECONDS = 300


def _provider(name: str) -> OidcProvider:
    provider = oidc_provider_get(name)
    if provider is None:
        raise Http404("No identity provider is configured under this name.")
    return provider


def _safe_next(request: HttpRequest, candidate: str | None) -> str:
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse("admin:index")


def _refused_page(request: HttpRequest, refusal: SsoRefused, *, status: int = 403) -> HttpResponse:
    return render(request, "sso/refused.html", {"message": refusal.message}, status=status)


@never_cache
@require_GET
def sso_login_start(request: HttpRequest, provider_name: str) -> HttpResponse:
    """Send the browser to the provider, with a fresh state, nonce and PKCE challenge."""
    provider = _provider(provider_name)
    request.session[_NEXT] = _safe_next(request, request.GET.get("next"))
    callback = request.build_absolute_uri(reverse("sso-callback", args=[provider.name]))
    try:
        response: HttpResponse = oidc_client(provider).authorize_redirect(request, callback)
    except Exception as error:  # noqa: BLE001 - discovery failed: any transport or format error
        refusal = SsoRefused(
            code="provider_unavailable",
            message=f"The identity provider {provider.label} could not be reached; try again shortly.",
            reason=f"unreachable:{type(error).__name__}",
        )
        sso_failure_record(provider=provider.name, refusal=refusal, channel="console")
        return _refused_page(request, refusal, status=503)
    return response


def _console_login(request: HttpRequest, *, sign_in: SsoSignIn, device: Any) -> HttpResponse:
    user = sign_in.user
    user.login_audit = {  # type: ignore[attr-defined]  # read by accounts.signals
        "method": "oidc",
        "provider": sign_in.provider,
        "second_factor": "provider" if sign_in.provider_mfa else device is not None,
    }
    auth.login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    if device is not None:
        otp_login(request, device)
    if sign_in.provider_mfa:
        request.session[SSO_MFA_SESSION_KEY] = sign_in.provider
    return HttpResponseRedirect(request.session.pop(_NEXT, None) or reverse("admin:index"))


@never_cache
@require_GET
def sso_login_callback(request: HttpRequest, provider_name: str) -> HttpResponse:
    """The provider's redirect back: verify, sign in or create the person, ask a code if due."""
    provider = _provider(provider_name)
    subject = ""
    try:
        claims = authorization_code_redeem(provider=provider, request=request)
        subject = str(claims.get("sub", ""))
        sign_in = sso_sign_in(provider=provider, claims=claims)
        sso_second_factor_check(
            sign_in=sign_in, otp=None, client_ip=request_client_ip(request), channel="console"
        )
    except SsoRefused as refused:
        if refused.code == "otp_required":
            # Under a new session key: a session id planted before the sign-in cannot finish it.
            request.session.cycle_key()
            request.session[_PENDING] = {
                "user": sign_in.user.pk,
                "provider": provider.name,
                "until": time.time() + PENDING_SECONDS,
            }
            return HttpResponseRedirect(reverse("sso-verify"))
        sso_failure_record(provider=provider.name, refusal=refused, channel="console", subject=subject)
        if refused.enrolment_token:
            # Signed in nowhere yet: the enrolment page only, until an authenticator is confirmed.
            console_enrolment_hold(
                request=request,
                token=refused.enrolment_token,
                login={"method": "oidc", "provider": provider.name},
            )
            return HttpResponseRedirect(reverse("admin:account_2fa"))
        return _refused_page(request, refused, status=503 if refused.code == "provider_unavailable" else 403)
    return _console_login(request, sign_in=sign_in, device=None)


class OneTimeCodeForm(forms.Form):
    otp = forms.RegexField(
        regex=rf"^\s*(?:[0-9]{{6,8}}|{RECOVERY_CODE_TYPED})\s*$",
        max_length=16,
        label="One-time code or recovery code",
        error_messages={"invalid": OTP_INVALID},
    )


@never_cache
@require_http_methods(["GET", "POST"])
def sso_login_verify(request: HttpRequest) -> HttpResponse:
    """The one-time code of a parked sign-in; a wrong code counts toward the lockout."""
    pending = request.session.get(_PENDING)
    if not pending or pending["until"] < time.time():
        request.session.pop(_PENDING, None)
        return _refused_page(
            request,
            SsoRefused(code="invalid_token", message="This sign-in has expired; start again."),
        )
    provider = _provider(pending["provider"])
    user = User.objects.filter(pk=pending["user"], is_active=True).first()
    if user is None:
        request.session.pop(_PENDING, None)
        return _refused_page(
            request, SsoRefused(code="account_disabled", message="This account is disabled.")
        )
    form = OneTimeCodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        sign_in = SsoSignIn(
            user=user, provider=provider.name, created=False, provider_mfa=False, sessions_ended=0
        )
        try:
            sso_second_factor_check(
                sign_in=sign_in,
                otp=form.cleaned_data["otp"].strip(),
                client_ip=request_client_ip(request),
                channel="console",
            )
        except SsoRefused as refused:
            if refused.code == "locked":
                request.session.pop(_PENDING, None)
                return _refused_page(request, refused, status=429)
            form.add_error("otp", refused.message)
        else:
            request.session.pop(_PENDING, None)
            return _console_login(request, sign_in=sign_in, device=getattr(user, "otp_device", None))
    return render(
        request,
        "sso/verify.html",
        {"form": form, "provider": provider, "title": "One-time code"},
    )
