from django.apps import AppConfig


class EncryptionConfig(AppConfig):
    name = "encryption"
    verbose_name = "Encryption at rest"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from encryption import checks  # noqa: F401 - registers its system checks
