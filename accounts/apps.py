from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Identity and access"

    def ready(self) -> None:
        # Importing registers the bearer scheme with drf-spectacular and the login audit receivers.
        # The console-session receivers: login time stamped, logout told to open websockets.
        from accounts import credential_events, schema, session_lifetime, signals  # noqa: F401  # noqa: F401
