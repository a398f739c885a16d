"""Your second factor, in the console: `/admin/account/2fa/`.

Every signed-in console user enrols an authenticator here (its otpauth:// URL and secret
shown once), confirms it with a code, sees how many recovery codes are left, regenerates
them and removes the factor (both proven with a current code or a recovery code). Someone
who must have a second factor and has none is sent here by the login form, holding an
enrolment token in the session (accounts.enrolment_tokens) and no login: this page is the
only one they reach, to start and confirm, and confirming logs them in. The writes are the
API's services (accounts.services.two_factor), so each is audited alike.
"""

from functools import partial
from typing import Any

from django import forms
from django.contrib.admin import AdminSite
from django.contrib.auth import login as auth_login
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django_otp import login as otp_login
from django_otp.middleware import is_verified as otp_is_verified

from accounts.enrolment_tokens import enrolment_token_user
from accounts.models import User
from accounts.recovery_codes import RECOVERY_CODE_TYPED
from accounts.selectors import two_factor_status
from accounts.services.two_factor import (
    recovery_codes_regenerate,
    totp_enrolment_confirm,
    totp_enrolment_start,
    two_factor_remove,
)

# The session key of a pending enrolment's token (no login yet).
CONSOLE_ENROLMENT_TOKEN = "gatehouse_2fa_enrolment_token"  # noqa: S105 - a session key, not a secret
# How the person with a pending enrolment logged in (a password, or single sign-on).
CONSOLE_ENROLMENT_LOGIN = "gatehouse_2fa_enrolment_login"
# Enrolment follows a right password (the login policy's), so the login is a password login.
_PASSWORD_BACKEND = "django.contrib.auth.backends.ModelBackend"  # noqa: S105 - a class path
_SIGNED_IN_ACTIONS = frozenset({"start", "confirm", "remove", "regenerate"})
_PENDING_ACTIONS = frozenset({"start", "confirm"})


class TotpConfirmForm(forms.Form):
    code = forms.RegexField(
        r"^\s*[0-9]{6,8}\s*$",
        max_length=12,
        label="Code from your new authenticator",
        error_messages={"invalid": "The code is the 6 to 8 digits your new authenticator shows."},
    )


class TwoFactorProofForm(forms.Form):
    otp = forms.RegexField(
        rf"^\s*(?:[0-9]{{6,8}}|{RECOVERY_CODE_TYPED})\s*$",
        max_length=16,
        label="A current code, or an unused recovery code",
        error_messages={"invalid": "Send the 6 to 8 digits your authenticator shows, or a recovery code."},
    )


def console_enrolment_hold(*, request: HttpRequest, token: str, login: dict[str, str] | None = None) -> None:
    """Keep `token` in this browser's session, under a new session key (so a session id
    planted before the password was typed cannot enrol its own authenticator). `login` says how
    the person proved who they are (default a password), for the audit row of the login that
    the confirmation opens."""
    request.session.cycle_key()
    request.session[CONSOLE_ENROLMENT_TOKEN] = token
    request.session[CONSOLE_ENROLMENT_LOGIN] = login or {"method": "password"}


def console_enrolment_pending(request: HttpRequest) -> tuple[User, str] | None:
    """The person whose enrolment this session holds, and its token; None when it holds none
    that is still good (a stale one is dropped)."""
    token = request.session.get(CONSOLE_ENROLMENT_TOKEN)
    if not isinstance(token, str):
        return None
    user = enrolment_token_user(token=token)
    if user is None:
        request.session.pop(CONSOLE_ENROLMENT_TOKEN, None)
        return None
    return user, token


def console_login_answer(*, request: HttpRequest, response: Any) -> Any:
    """After the login form: whoever must enrol first goes to the enrolment page."""
    form = (getattr(response, "context_data", None) or {}).get("form")
    if request.method == "POST" and getattr(form, "enrolment_pending", False):
        return HttpResponseRedirect(reverse("admin:account_2fa"))
    return response


def _act(
    *, request: HttpRequest, action: str, user: User, pending_token: str | None, shown: dict[str, Any]
) -> None:
    """Run one posted action; what it returns to show once goes into `shown`. Raises
    ValidationError with what to tell the person."""
    if action == "start":
        shown["enrolment"] = totp_enrolment_start(user=user)
        shown["confirm_form"] = TotpConfirmForm()
        return
    if action == "confirm":
        form = TotpConfirmForm(request.POST)
        shown["confirm_form"] = form
        if not form.is_valid():
            return
        confirmed = totp_enrolment_confirm(
            user=user, code=form.cleaned_data["code"], enrolment_token=pending_token
        )
        shown["recovery_codes"] = confirmed.recovery_codes
        if pending_token is not None:
            request.session.pop(CONSOLE_ENROLMENT_TOKEN, None)
            how = request.session.pop(CONSOLE_ENROLMENT_LOGIN, None) or {"method": "password"}
            user.otp_device = confirmed.device  # type: ignore[attr-defined]  # django-otp marks the session
            user.login_audit = {  # type: ignore[attr-defined]  # read by the console login's audit
                **how,
                "second_factor": True,
                "second_factor_method": "totp",
                "enrolment": True,
            }
            auth_login(request, user, backend=_PASSWORD_BACKEND)
            # What django-otp's middleware gives a verified user from the next request on.
            user.is_verified = partial(otp_is_verified, user)  # type: ignore[attr-defined]
        else:
            otp_login(request, confirmed.device)
        return
    proof = TwoFactorProofForm(request.POST, auto_id=f"{action}_%s")
    shown[f"{action}_form"] = proof
    if not proof.is_valid():
        return
    code = proof.cleaned_data["otp"].strip()
    if action == "remove":
        two_factor_remove(user=user, code=code, channel="console")
        shown["removed"] = True
    else:
        shown["recovery_codes"] = recovery_codes_regenerate(user=user, code=code, channel="console")


def two_factor_page(request: HttpRequest, *, site: AdminSite) -> HttpResponse:
    signed_in = site.has_permission(request)
    pending = None if signed_in else console_enrolment_pending(request)
    if not signed_in and pending is None:
        return redirect_to_login(request.get_full_path(), reverse("admin:login"))
    user: User = request.user if signed_in else pending[0]  # type: ignore[assignment,index]
    pending_token = pending[1] if pending is not None else None
    shown: dict[str, Any] = {}
    errors: list[str] = []
    if request.method == "POST":
        action = request.POST.get("action", "")
        if action not in (_PENDING_ACTIONS if pending_token else _SIGNED_IN_ACTIONS):
            return HttpResponseBadRequest("Unknown action.", content_type="text/plain; charset=utf-8")
        try:
            _act(request=request, action=action, user=user, pending_token=pending_token, shown=shown)
        except ValidationError as refused:
            errors = refused.messages
    return TemplateResponse(
        request,
        "console/two_factor.html",
        {
            **site.each_context(request),
            "title": "Your second factor",
            "person": user,
            "pending_login": pending_token is not None and request.user != user,
            "status": two_factor_status(user=user),
            "errors": errors,
            "confirm_form": TotpConfirmForm(),
            "remove_form": TwoFactorProofForm(auto_id="remove_%s"),
            "regenerate_form": TwoFactorProofForm(auto_id="regenerate_%s"),
            **shown,
        },
    )
