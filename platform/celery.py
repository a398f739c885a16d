"""The Celery application: `celery -A gatehouse worker` runs it."""

import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gatehouse.settings")

app = Celery("gatehouse")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def _serve_worker_metrics(**_: object) -> None:
    """A worker pod's own /metrics (its generations, tokens and GPU memory), when asked for.

    The web tier's /metrics covers workers only where they share its PROMETHEUS_MULTIPROC_DIR
    (one host); on a cluster each GPU worker is scraped on GATEHOUSE_WORKER_METRICS_PORT.
    """
    port = os.environ.get("GATEHOUSE_WORKER_METRICS_PORT")
    if port:
        from prometheus_client import start_http_server

        from gatehouse.metrics_export import metrics_registry

        start_http_server(int(port), registry=metrics_registry(state=False))
