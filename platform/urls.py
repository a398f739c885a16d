from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts.api.urls import auth_urlpatterns, key_urlpatterns
from accounts.api.usage import UsageView
from accounts.api.views import WsTicketView
from gatehouse import api_errors, health, metrics_export
from spend.api.views import SpendView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("auth/oidc/", include("sso.urls")),
    path("api/auth/oidc/", include("sso.api.urls")),
    path("api/auth/", include(auth_urlpatterns)),
    path("api/keys/", include(key_urlpatterns)),
    path("api/ws-ticket/", WsTicketView.as_view(), name="ws-ticket"),
    path("api/usage/", UsageView.as_view(), name="usage"),
    path("api/spend/", SpendView.as_view(), name="spend"),
    path("api/budgets/", include("spend.api.urls")),
    path("api/conversations/", include("inference.api.conversation_urls")),
    path("api/models/", include("inference.api.registry.urls")),
    path("api/audit/", include("audit.api.urls")),
    path("api/compliance/", include("audit.api.compliance_urls")),
    path("v1/", include("inference.api.urls")),
    path("scim/v2/", include("scim.urls")),
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[]), name="api-schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="api-schema", permission_classes=[]),
        name="api-docs",
    ),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_export.metrics, name="metrics"),
    # Last: an API path nothing above matched is answered in the API's shape, not with a page.
    re_path(r"^(api|v1)/", api_errors.api_not_found, name="api-not-found"),
]

handler500 = "gatehouse.api_errors.server_error"
