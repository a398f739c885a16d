from django.urls import path

from accounts.api import views

auth_urlpatterns = [
    path("token/", views.TokenObtainView.as_view(), name="auth-token"),
    path("token/refresh/", views.TokenRefreshView.as_view(), name="auth-token-refresh"),
    path("logout/", views.LogoutView.as_view(), name="auth-logout"),
]

key_urlpatterns = [
    path("", views.ApiKeyListView.as_view(), name="api-keys"),
    path("<int:key_id>/", views.ApiKeyDetailView.as_view(), name="api-key-detail"),
]
