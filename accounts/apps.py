from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Identity and access"

    def ready(self) -> None:
        # Registers the bearer scheme with drf-spectacular (extensions register on import).
        import accounts.schema  # noqa: F401
