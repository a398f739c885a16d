from django.urls import path

from inference.api.completions import ChatCompletionView, EmbeddingView, ResponsesView, TextCompletionView
from inference.api.views import ModelDetailView, ModelListView

urlpatterns = [
    path("models", ModelListView.as_view(), name="v1-models"),
    path("models/<str:model_name>", ModelDetailView.as_view(), name="v1-model-detail"),
    path("chat/completions", ChatCompletionView.as_view(), name="v1-chat-completions"),
    path("completions", TextCompletionView.as_view(), name="v1-completions"),
    path("embeddings", EmbeddingView.as_view(), name="v1-embeddings"),
    path("responses", ResponsesView.as_view(), name="v1-responses"),
]
