from django.urls import path

from accounts.api import two_factor, views

auth_urlpatterns = [
    path("token/", views.TokenObtainView.as_view(), name="auth-token"),
    path("token/refresh/", views.TokenRefreshView.as_view(), name="auth-token-refresh"),
    path("logout/", views.LogoutView.as_view(), name="auth-logout"),
    path("2fa/", two_factor.TwoFactorStatusView.as_view(), name="auth-2fa"),
    path("2fa/totp/", two_factor.TotpView.as_view(), name="auth-2fa-totp"),
    path("2fa/totp/confirm/", two_factor.TotpConfirmView.as_view(), name="auth-2fa-totp-confirm"),
    path("2fa/recovery-codes/", two_factor.RecoveryCodesView.as_view(), name="auth-2fa-recovery-codes"),
]

key_urlpatterns = [
    path("", views.ApiKeyListView.as_view(), name="api-keys"),
    path("<int:key_id>/", views.ApiKeyDetailView.as_view(), name="api-key-detail"),
]
