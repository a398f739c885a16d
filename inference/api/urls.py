from django.urls import path

from inference.api.views import ModelListView

urlpatterns = [
    path("models", ModelListView.as_view(), name="v1-models"),
]
