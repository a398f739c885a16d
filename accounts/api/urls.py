from django.urls import path
from rest_framework_simplejwt.views import TokenRefreshView

from accounts.api.views import TokenObtainView

urlpatterns = [
    path("token/", TokenObtainView.as_view(), name="auth-token"),
    path("token/refresh/", TokenRefreshView.as_view(), name="auth-token-refresh"),
]
