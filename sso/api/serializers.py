from rest_framework import serializers


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
    otp = serializers.RegexField(
        r"^[0-9]{6,8}$",
        required=False,
        max_length=8,
        help_text="Your authenticator's code, when you have one and the provider did not ask for a second factor.",
        error_messages={"invalid": "The one-time code is the 6 to 8 digits your authenticator shows."},
    )
