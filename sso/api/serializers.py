from rest_framework import serializers

from accounts.api.serializers import otp_field


class ProviderOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField()
    display_name = serializers.CharField(help_text="What the console's button says.")
    issuer = serializers.URLField()
    client_id = serializers.CharField(
        help_text="The audience Gatehouse expects in the ID tokens it exchanges."
    )
    console_login_url = serializers.CharField()


class IdTokenExchangeInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    provider = serializers.SlugField(
        max_length=40, help_text="A provider's name, from GET /api/auth/oidc/providers/."
    )
    id_token = serializers.CharField(max_length=16384, trim_whitespace=True)
    otp = otp_field(
        required=False,
        help_text=(
            "Your authenticator's code or a recovery code, when you have a second factor and the "
            "provider did not vouch for one."
        ),
    )
