from django.urls import path

from inference.api.registry.views import (
    RegistryDeploymentListView,
    RegistryModelDetailView,
    RegistryModelListView,
    RegistryModelStepView,
    RegistryVersionCanaryView,
    RegistryVersionListView,
    RegistryVersionPricesView,
    RegistryVersionStepView,
)

_VERSION = "<slug:model_name>/versions/<str:label>/"

urlpatterns = [
    path("", RegistryModelListView.as_view(), name="registry-models"),
    path("<slug:model_name>/", RegistryModelDetailView.as_view(), name="registry-model"),
    path("<slug:model_name>/versions/", RegistryVersionListView.as_view(), name="registry-versions"),
    *(
        path(
            f"{_VERSION}{step}/", RegistryVersionStepView.as_view(step=step), name=f"registry-version-{step}"
        )
        for step in ("stage", "promote", "retire")
    ),
    path(f"{_VERSION}prices/", RegistryVersionPricesView.as_view(), name="registry-version-prices"),
    path(f"{_VERSION}canary/", RegistryVersionCanaryView.as_view(), name="registry-version-canary"),
    path(f"{_VERSION}deployments/", RegistryDeploymentListView.as_view(), name="registry-deployments"),
    *(
        path(f"<slug:model_name>/{step}/", RegistryModelStepView.as_view(step=step), name=f"registry-{step}")
        for step in ("rollback", "canary-stop")
    ),
]
