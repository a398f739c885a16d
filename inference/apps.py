from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "Models and inference"

    def ready(self) -> None:
        import inference.signals  # noqa: F401
