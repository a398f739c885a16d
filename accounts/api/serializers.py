from rest_framework import serializers

from accounts.models import ApiKey
from accounts.selectors import api_key_model_names


class TokenObtainInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})
    otp = serializers.RegexField(
        r"^[0-9]{6,8}$",
        required=False,
        max_length=8,
        help_text="The one-time code of your authenticator; required once you have enrolled one.",
        error_messages={"invalid": "The one-time code is the 6 to 8 digits your authenticator shows."},
    )


class TokenPairOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    access = serializers.CharField()
    refresh = serializers.CharField()


class TokenRefreshInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    refresh = serializers.CharField(max_length=4096)


class LogoutInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    refresh = serializers.CharField(max_length=4096, required=False)
    all = serializers.BooleanField(default=False)


class LogoutOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    sessions_ended = serializers.IntegerField()


class ApiKeyCreateInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=ApiKey.Scope.choices), allow_empty=False, max_length=10
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    allowed_networks = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, max_length=50
    )
    models = serializers.ListField(
        child=serializers.SlugField(max_length=100),
        required=False,
        max_length=100,
        help_text="Only these of your models (names); left out, every model you may use.",
    )


class ApiKeyOutputSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    prefix = serializers.SerializerMethodField()
    revoked = serializers.SerializerMethodField()
    models = serializers.SerializerMethodField(help_text="The models it may use; empty: all of yours.")

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "allowed_networks",
            "models",
            "expires_at",
            "revoked",
            "revoked_at",
            "last_used_at",
            "created_at",
        ]

    def get_prefix(self, key: ApiKey) -> str:
        return f"gk_{key.prefix}"

    def get_revoked(self, key: ApiKey) -> bool:
        return key.revoked_at is not None

    def get_models(self, key: ApiKey) -> list[str]:
        return api_key_model_names(api_key=key)


class ApiKeyCreatedOutputSerializer(ApiKeyOutputSerializer):
    key = serializers.CharField(help_text="The full key. Shown only in this response; store it now.")

    class Meta(ApiKeyOutputSerializer.Meta):
        fields = [*ApiKeyOutputSerializer.Meta.fields, "key"]


class WsTicketOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    ticket = serializers.CharField()
    expires_in = serializers.IntegerField()
