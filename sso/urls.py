from django.urls import path

from sso import console_views

urlpatterns = [
    path("verify/", console_views.sso_login_verify, name="sso-verify"),
    path("<slug:provider_name>/login/", console_views.sso_login_start, name="sso-login"),
    path("<slug:provider_name>/callback/", console_views.sso_login_callback, name="sso-callback"),
]
