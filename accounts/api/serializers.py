from rest_framework import serializers

from accounts.models import ApiKey
from accounts.recovery_codes import RECOVERY_CODE_TYPED
from accounts.selectors import api_key_model_names

OTP_INVALID = (
    "The one-time code is the 6 to 8 digits your authenticator shows, "
    "or one of your recovery codes (10 letters and digits, such as abcde-23456)."
)


def otp_field(*, required: bool, help_text: str) -> serializers.RegexField:
    """A one-time code of an authenticator, or a recovery code in place of one."""
    return serializers.RegexField(
        rf"^(?:[0-9]{{6,8}}|{RECOVERY_CODE_TYPED})$",
        required=required,
        max_length=11,
        help_text=help_text,
        error_messages={"invalid": OTP_INVALID},
    )


class TokenObtainInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})
    otp = otp_field(
        required=False,
        help_text=(
            "The one-time code of your authenticator, or one of your recovery codes (each good once); "
            "required once you have a second factor."
        ),
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


class TwoFactorStatusOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    enrolled = serializers.BooleanField(help_text="Whether logins ask you for a second factor.")
    # A declared field: DRF's metaclass takes it off the class, so it never meets Field.required.
    required = serializers.BooleanField(help_text="Whether your role requires one.")  # type: ignore[assignment]
    totp_confirmed = serializers.BooleanField(help_text="You have a confirmed authenticator.")
    totp_pending = serializers.BooleanField(help_text="An enrolment is started and not yet confirmed.")
    recovery_codes_remaining = serializers.IntegerField()


class TotpEnrolmentOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    config_url = serializers.CharField(help_text="The otpauth:// URL for your authenticator app. Shown once.")
    secret = serializers.CharField(help_text="The same secret in base32, to type in by hand. Shown once.")


class TotpConfirmInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    code = serializers.RegexField(
        r"^[0-9]{6,8}$",
        max_length=8,
        help_text="The code the new authenticator shows now.",
        error_messages={"invalid": "The code is the 6 to 8 digits your new authenticator shows."},
    )


class RecoveryCodesOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    recovery_codes = serializers.ListField(
        child=serializers.CharField(),
        help_text="Each good once in place of a one-time code. Shown only in this response; store them now.",
    )


class TotpConfirmedOutputSerializer(RecoveryCodesOutputSerializer):
    access = serializers.CharField(required=False, help_text="With an enrolment token: your new session.")
    refresh = serializers.CharField(required=False, help_text="With an enrolment token: your new session.")


class TwoFactorProofInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    otp = otp_field(
        required=True, help_text="A current code of your authenticator, or an unused recovery code."
    )
