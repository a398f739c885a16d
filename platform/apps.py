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
        # Bind shared tasks to the project's Celery app in every process that loads Django.
        import gatehouse.celery  # noqa: F401


class ConsoleAdminConfig(AdminConfig):
    """Django's admin app with Gatehouse's console site as the default site."""

    default_site = "gatehouse.admin_site.ConsoleAdminSite"
