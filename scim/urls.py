"""/scim/v2/: no trailing slashes, as SCIM clients call them."""

from django.urls import path, re_path

from scim import views

urlpatterns = [
    path("Users", views.UsersView.as_view(), name="scim-users"),
    path("Users/<str:scim_id>", views.UserView.as_view(), name="scim-user"),
    path("Groups", views.GroupsView.as_view(), name="scim-groups"),
    path("Groups/<str:scim_id>", views.GroupView.as_view(), name="scim-group"),
    path(
        "ServiceProviderConfig",
        views.ServiceProviderConfigView.as_view(),
        name="scim-service-provider-config",
    ),
    path("ResourceTypes", views.ResourceTypesView.as_view(), name="scim-resource-types"),
    path("Schemas", views.SchemasView.as_view(), name="scim-schemas"),
    re_path(r"^(?P<rest>.*)$", views.UnknownPathView.as_view(), name="scim-not-found"),
]
