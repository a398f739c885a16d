"""The Celery application: `celery -A gatehouse worker` runs it.

Its signals carry the request id into tasks (a message header, bound while the task runs),
serve a worker's own /metrics when asked, and drop its live gauges when it exits.
"""

import os
from contextvars import Token
from typing import Any

from celery import Celery, Task
from celery.signals import (
    before_task_publish,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from audit.context import (
    RequestContext,
    request_context_current,
    request_context_pop,
    request_context_push,
    request_id_new,
)
from gatehouse.worker_probe import worker_probe_connect

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gatehouse.settings")

app = Celery("gatehouse")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The heartbeat and ready files the worker probes read (gatehouse.worker_probe).
worker_probe_connect()

# The message header that carries the request id from the web tier into a task.
REQUEST_ID_HEADER = "gatehouse_request_id"
_bound: dict[str, Token[RequestContext | None]] = {}


@worker_init.connect
def _yield_cpu_to_the_web_tier(**_: object) -> None:
    """Before it takes work: every thread lower than the web tier (GATEHOUSE_WORKER_NICENESS,
    and the idle scheduling class with GATEHOUSE_WORKER_SCHED_IDLE), and on the CPUs it is
    given (GATEHOUSE_WORKER_CPUS)."""
    from django.conf import settings

    from gatehouse.process_priority import process_cpus_confine, process_priority_lower

    process_priority_lower(
        niceness=settings.GATEHOUSE_WORKER_NICENESS, idle_class=settings.GATEHOUSE_WORKER_SCHED_IDLE
    )
    process_cpus_confine(cpus=settings.GATEHOUSE_WORKER_CPUS)


@before_task_publish.connect
def _carry_request_id(headers: dict[str, Any] | None = None, **_: object) -> None:
    context = request_context_current()
    if context is not None and headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, context.request_id)


@task_prerun.connect
def _bind_request_id(task_id: str | None = None, task: Task[Any, Any] | None = None, **_: object) -> None:
    """The task's logs and audit events carry the id of the request that queued it
    (or a fresh one for beat's tasks)."""
    if task_id is None or task is None or task.request.is_eager:
        return  # an eager task runs inside its caller's context already
    proposed = getattr(task.request, REQUEST_ID_HEADER, None)
    _bound[task_id] = request_context_push(RequestContext(request_id=request_id_new(proposed=proposed)))


@task_postrun.connect
def _unbind_request_id(task_id: str | None = None, **_: object) -> None:
    token = _bound.pop(task_id or "", None)
    if token is not None:
        request_context_pop(token)


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


@worker_ready.connect
def _freeze_the_started_heap(**_: object) -> None:
    """What start-up built lives as long as the worker: collections skip it (gatehouse.heap).

    Connected here, before `inference.tasks` connects its warm-up (receivers run in the order
    they were connected), so that no warmed model is frozen: an evicted one must be freed.
    """
    from gatehouse.heap import heap_freeze

    heap_freeze(reason="worker started", collect=True)


@worker_process_shutdown.connect
@worker_shutdown.connect
def _forget_worker_gauges(**_: object) -> None:
    from gatehouse.metrics import metrics_process_exited

    metrics_process_exited()
