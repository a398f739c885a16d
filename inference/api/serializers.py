"""Response shapes of the OpenAI-compatible API, for the schema."""

from rest_framework import serializers


class ModelEntrySerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.CharField()
    object = serializers.CharField(default="model")
    created = serializers.IntegerField()
    owned_by = serializers.CharField()


class ModelListSerializer(serializers.Serializer):  # type: ignore[type-arg]
    object = serializers.CharField(default="list")
    # DRF moves declared fields off the class, so this does not shadow `Serializer.data` at run time.
    data = ModelEntrySerializer(many=True)  # type: ignore[assignment]
