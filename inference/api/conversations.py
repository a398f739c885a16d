"""`/api/conversations/`: the caller's own stored chats, to list, read and delete."""

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.generics import ListAPIView
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from inference.models import Conversation, Message
from inference.selectors import conversation_get_own, conversation_list_own
from inference.services import conversation_delete


class ConversationSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    model = serializers.CharField(source="model.name")
    message_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Conversation
        fields = ["id", "title", "model", "channel", "message_count", "created_at", "updated_at"]


class MessageSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    version = serializers.CharField(source="version.label", allow_null=True, default=None)

    class Meta:
        model = Message
        fields = [
            "role",
            "content",
            "version",
            "prompt_tokens",
            "completion_tokens",
            "finish_reason",
            "created_at",
        ]


class ConversationDetailSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    model = serializers.CharField(source="model.name")
    messages = MessageSerializer(many=True, read_only=True)

    class Meta:
        model = Conversation
        fields = ["id", "title", "model", "channel", "created_at", "updated_at", "messages"]


class ConversationPages(LimitOffsetPagination):
    default_limit = 50
    max_limit = 200


class ConversationListView(ListAPIView):  # type: ignore[type-arg]
    """The caller's conversations, newest first (everyone sees only their own)."""

    required_scope = "chat"
    serializer_class = ConversationSerializer
    pagination_class = ConversationPages

    def get_queryset(self) -> QuerySet[Conversation]:
        user: User = self.request.user  # type: ignore[assignment]
        return conversation_list_own(user=user)


class ConversationDetailView(APIView):
    """One of the caller's conversations with its messages; anyone else's is 404."""

    required_scope = "chat"

    def _own(self, request: Request, conversation_id: str) -> Conversation:
        user: User = request.user  # type: ignore[assignment]
        conversation = conversation_get_own(user=user, conversation_id=conversation_id)
        if conversation is None:
            raise NotFound("No such conversation.")
        return conversation

    @extend_schema(responses={200: ConversationDetailSerializer})
    def get(self, request: Request, conversation_id: str) -> Response:
        conversation = self._own(request, conversation_id)
        return Response(ConversationDetailSerializer(conversation).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, conversation_id: str, **kwargs: Any) -> Response:
        user: User = request.user  # type: ignore[assignment]
        conversation_delete(conversation=self._own(request, conversation_id), actor=user)
        return Response(status=204)
