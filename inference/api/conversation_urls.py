from django.urls import path

from inference.api.conversations import ConversationDetailView, ConversationListView

urlpatterns = [
    path("", ConversationListView.as_view(), name="conversations"),
    path("<str:conversation_id>/", ConversationDetailView.as_view(), name="conversation-detail"),
]
