"""Probes: /healthz says the process is alive, /readyz that its dependencies answer.

/readyz checks what this process needs to serve a request: the database, the cache, the
channel layer, the Celery broker (where generations go to workers) and, where this process
generates itself (the in-process executor), that the models in GATEHOUSE_WARM_MODELS are
loaded. Warm-up starts on the first probe and the process stays unready until it is done,
so no user pays for a cold model.
"""

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_cache() -> None:
    key = f"readyz:{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=5)
    if cache.get(key) != "1":
        raise RuntimeError("cache did not return what was written")
    cache.delete(key)


async def _channel_layer_roundtrip() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "readyz.ping"})
    await asyncio.wait_for(layer.receive(channel), timeout=2)


def _check_channel_layer() -> None:
    async_to_sync(_channel_layer_roundtrip)()


def _check_broker() -> None:
    from gatehouse.celery import app

    with app.connection_for_write() as broker:
        broker.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)


class NotReady(Exception):
    """A dependency that is fine but not ready yet; its message is the probe's answer."""


class _InprocessWarmUp:
    """Warm this process's engines once, in the background; report whether that is done."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.done = False
        self.failed: str | None = None

    def check(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="engine-warm-up", daemon=True)
                self._thread.start()
        if self.failed:
            raise RuntimeError(f"warm-up failed: {self.failed}")
        if not self.done:
            raise NotReady("warming up")

    def _run(self) -> None:
        from django.db import close_old_connections

        from inference.engines.loader import engines_warm_up

        try:
            engines_warm_up(model_names=[name for name in settings.GATEHOUSE_WARM_MODELS if name])
        except Exception as exc:  # reported by /readyz until the process is replaced
            logger.exception("engine warm-up failed")
            self.failed = type(exc).__name__
        else:
            self.done = True
        finally:
            close_old_connections()


_warm_up = _InprocessWarmUp()


def _checks() -> dict[str, Callable[[], None]]:
    checks: dict[str, Callable[[], None]] = {
        "database": _check_database,
        "cache": _check_cache,
        "channel_layer": _check_channel_layer,
    }
    if settings.GATEHOUSE_INFERENCE_EXECUTOR == "celery":
        checks["broker"] = _check_broker
    elif any(settings.GATEHOUSE_WARM_MODELS):
        # Workers warm their own models (inference.tasks); here this process is the worker.
        checks["engine"] = _warm_up.check
    return checks


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    results: dict[str, str] = {}
    for name, check in _checks().items():
        try:
            check()
        except NotReady as waiting:
            results[name] = str(waiting)
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported by name
            results[name] = f"error: {type(exc).__name__}"
        else:
            results[name] = "ok"
    ready = all(value == "ok" for value in results.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": results}, status=200 if ready else 503
    )
