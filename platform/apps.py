from pathlib import Path

from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class GatehouseConfig(AppConfig):
    name = "gatehouse"
    label = "gatehouse"
    verbose_name = "Gatehouse platform"
    # `gatehouse` is a namespace package (platform/ has no __init__.py), so Django
    # cannot infer a single filesystem location for it.
    path = str(Path(__file__).resolve().parent)

    def ready(self) -> None:
        from django.core import checks

        # Bind shared tasks to the project's Celery app in every process that loads Django.
        import gatehouse.celery  # noqa: F401
        from gatehouse.checks import unsafe_defaults_check
        from gatehouse.local_cache_signals import local_cache_signals_connect

        # Production refuses deploy/'s placeholder secrets: `check --deploy` and every command.
        checks.register(unsafe_defaults_check, checks.Tags.security)
        # Governance state the request path caches is dropped everywhere when it changes.
        local_cache_signals_connect()
        # OpenTelemetry, where the OTEL_* variables ask for it (after gatehouse.celery, so its
        # request-id binding runs before the task spans start and is on them).
        from gatehouse.tracing import tracing_setup

        tracing_setup()


class ConsoleAdminConfig(AdminConfig):
    """Django's admin app with Gatehouse's console site as the default site."""

    default_site = "gatehouse.admin_site.ConsoleAdminSite"
