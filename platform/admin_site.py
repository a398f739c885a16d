"""The console: Django's admin, behind a second factor where one is due."""

from typing import Any

from django import forms
from django.contrib.admin import AdminSite
from django.http import HttpRequest
from django.urls import path
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django_otp.admin import OTPAdminAuthenticationForm

from accounts.authentication import request_client_ip
from accounts.models import User
from accounts.services.login import LOGIN_INVALID_MESSAGE, LoginRefused, login_authenticate
from accounts.two_factor import two_factor_method, two_factor_required
from audit.console_log import console_admin_audited
from gatehouse.console import two_factor as console_two_factor
from gatehouse.console import views as console_views
from sso.providers import oidc_providers
from sso.second_factor import sso_session_second_factor


class ConsoleLoginForm(OTPAdminAuthenticationForm):  # type: ignore[misc]
    """The console's login: the API's login policy (accounts.services.login) behind a form.

    Password, then the one-time code (or a recovery code) of anyone with a second factor, and
    the same lockout counters as the API. A wrong password, a missing or wrong code and an
    account that may not enter the console all get one message, and the page looks the same
    for each. Someone who must enrol a second factor first is sent to the enrolment page
    (`enrolment_pending`, gatehouse.console.two_factor).
    """

    enrolment_pending = False

    error_messages = {
        **OTPAdminAuthenticationForm.error_messages,
        "invalid_login": LOGIN_INVALID_MESSAGE,
        "inactive": LOGIN_INVALID_MESSAGE,
    }

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = self.cleaned_data
        username, password = cleaned.get("username"), cleaned.get("password")
        if not username or not password:
            return cleaned  # the empty field says so itself
        try:
            user = login_authenticate(
                username=username,
                password=password,
                otp=cleaned.get("otp_token") or None,
                client_ip=request_client_ip(self.request) if self.request is not None else None,
                channel="console",
            )
        except LoginRefused as refused:
            if refused.enrolment_token and self.request is not None:
                console_two_factor.console_enrolment_hold(request=self.request, token=refused.enrolment_token)
                self.enrolment_pending = True
            raise forms.ValidationError(refused.message, code=refused.code) from None
        # Checked before the user is kept: the template shows more to a form that has one.
        self.confirm_login_allowed(user)
        device = getattr(user, "otp_device", None)
        # The login's audit row says which second factor it proved (accounts.signals).
        user.login_audit = {  # type: ignore[attr-defined]
            "method": "password",
            "second_factor": device is not None,
            "second_factor_method": two_factor_method(device),
        }
        self.user_cache = user
        return cleaned


class ConsoleAdminSite(AdminSite):
    site_header = "Gatehouse console"
    site_title = "Gatehouse console"
    index_title = "Administration"
    login_form = ConsoleLoginForm
    # django-otp's copy of the admin login page (the code field), with single sign-on buttons.
    login_template = "console/login.html"

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        providers = sorted(oidc_providers().values(), key=lambda provider: provider.label)
        response = super().login(request, {**(extra_context or {}), "sso_providers": providers})
        return console_two_factor.console_login_answer(request=request, response=response)

    def get_urls(self) -> list[Any]:
        def page(view: Any) -> Any:
            # admin_view: the console's login, staff check and second factor, and no caching.
            return self.admin_view(lambda request: view(request, context=self.each_context(request)))

        return [
            path("dashboard/", page(console_views.dashboard), name="dashboard"),
            path("playground/", page(console_views.playground), name="playground"),
            # Reached before a second factor is proven (to enrol one), so not behind admin_view.
            path(
                "account/2fa/",
                never_cache(
                    csrf_protect(lambda request: console_two_factor.two_factor_page(request, site=self))
                ),
                name="account_2fa",
            ),
            *super().get_urls(),
        ]

    def register(self, model_or_iterable: Any, admin_class: Any = None, **options: Any) -> None:
        super().register(model_or_iterable, admin_class, **options)
        models = model_or_iterable if isinstance(model_or_iterable, list | tuple) else [model_or_iterable]
        for model in models:
            # Every console edit, whatever the model, reaches the audit trail. (Swapped-out
            # models, such as auth's own User, are skipped by the site and have no admin.)
            if model in self._registry:
                console_admin_audited(self._registry[model])

    def has_permission(self, request: HttpRequest) -> bool:
        if not super().has_permission(request):
            return False
        user = request.user
        if not (isinstance(user, User) and two_factor_required(user)):
            return True
        return bool(user.is_verified()) or sso_session_second_factor(request.session)  # type: ignore[attr-defined]
