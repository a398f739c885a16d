"""Waiting for what another thread or process writes (a worker's audit record, say)."""

import asyncio
from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async


async def eventually(query: Callable[[], Any], *, seconds: float = 30.0) -> Any:
    """Poll `query` (a sync callable, run off the event loop) until it returns something
    other than None, or fail after `seconds`."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        found = await database_sync_to_async(query)()
        if found is not None:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"nothing turned up within {seconds:.0f}s")


def completed_audit_event() -> Any:
    """The (first) `inference.completed` record, or None while there is none yet."""
    from audit.models import AuditEvent

    return AuditEvent.objects.filter(action="inference.completed").first()
