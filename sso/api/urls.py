from django.urls import path

from sso.api import views

urlpatterns = [
    path("providers/", views.ProviderListView.as_view(), name="sso-providers"),
    path("token/", views.IdTokenExchangeView.as_view(), name="sso-token"),
]
