"""The ASGI lifespan: at start-up, pay the Celery client's one-time costs
(`inference.dispatch.workers_dispatch_warm`) and freeze the heap start-up built
(gatehouse.heap); on shutdown, let this process's own generations end and be recorded.

On SIGTERM uvicorn stops accepting, closes websockets (1012, "service restart"), waits for
HTTP streams up to its graceful timeout, then sends `lifespan.shutdown`, and exits by
re-raising the signal, which kills whatever threads are left. Generations running in this
process (the in-process executor; Celery workers drain their own on a warm shutdown) were
told to stop when their sockets closed; waiting for them here is what gets their quota
settled and their audit record written before the process goes; then the audit appender's
connection and the remote upstreams' are closed.
"""

import threading
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from audit.appender import audit_appender_close
from gatehouse.heap import heap_freeze
from gatehouse.metrics import metrics_process_exited
from inference.dispatch import inprocess_generations_drain, workers_dispatch_warm
from inference.engines.remote_async import remote_sessions_close


async def lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            # In the background: a broker that is down must not hold the web process's start.
            threading.Thread(target=workers_dispatch_warm, name="dispatch-warm-up", daemon=True).start()
            # What start-up built lives as long as the process: collections skip it from now on.
            heap_freeze(reason="web process started", collect=True)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            drained = await sync_to_async(inprocess_generations_drain, thread_sensitive=False)(
                timeout=settings.GATEHOUSE_SHUTDOWN_DRAIN_SECONDS
            )
            await audit_appender_close()
            await remote_sessions_close()
            metrics_process_exited()
            if drained:
                await send({"type": "lifespan.shutdown.complete"})
            else:
                await send({"type": "lifespan.shutdown.failed", "message": "generations still running"})
            return
