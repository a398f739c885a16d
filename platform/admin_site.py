"""The console: Django's admin, behind a second factor where one is due."""

from typing import Any

from django import forms
from django.contrib.admin import AdminSite
from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import HttpRequest
from django.urls import path
from django_otp import devices_for_user
from django_otp.admin import OTPAdminAuthenticationForm

from accounts.models import User
from accounts.two_factor import two_factor_enrolled, two_factor_required
from audit.console_log import console_admin_audited
from gatehouse.console import views as console_views


class ConsoleLoginForm(OTPAdminAuthenticationForm):  # type: ignore[misc]
    """Password, then a TOTP code for anyone enrolled and for admins when 2FA is required."""

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = AdminAuthenticationForm.clean(self)
        user = self.get_user()
        if isinstance(user, User) and (two_factor_enrolled(user) or two_factor_required(user)):
            if not two_factor_enrolled(user):
                raise forms.ValidationError(
                    "Two-factor authentication is required for administrators and this account has no "
                    "authenticator yet. Enrol one with `manage.py twofactor_enroll USERNAME`.",
                    code="two_factor_not_enrolled",
                )
            self.clean_otp(user)
        return cleaned

    def _chosen_device(self, user: User) -> Any:
        # With one authenticator (the usual case) nobody should have to pick it from a list.
        chosen = super()._chosen_device(user)
        if chosen is None:
            chosen = next(iter(devices_for_user(user, confirmed=True)), None)
        return chosen


class ConsoleAdminSite(AdminSite):
    site_header = "Gatehouse console"
    site_title = "Gatehouse console"
    index_title = "Administration"
    login_form = ConsoleLoginForm
    # django-otp's copy of the admin login page, which adds the code field.
    login_template = "otp/admin111/login.html"

    def get_urls(self) -> list[Any]:
        def page(view: Any) -> Any:
            # admin_view: the console's login, staff check and second factor, and no caching.
            return self.admin_view(lambda request: view(request, context=self.each_context(request)))

        return [
            path("dashboard/", page(console_views.dashboard), name="dashboard"),
            path("playground/", page(console_views.playground), name="playground"),
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
        return not (isinstance(user, User) and two_factor_required(user)) or bool(user.is_verified())  # type: ignore[attr-defined]
