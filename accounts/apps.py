from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Identity and access"

    def ready(self) -> None:
        # Importing registers the bearer scheme with drf-spectacular and the login audit receivers.
        from accounts import schema, signals  # noqa: F401
