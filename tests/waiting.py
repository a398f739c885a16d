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
    """The `inference.completed` record, or None while there is none yet.

    For a test that made one generation: a second record (another test's late write, say)
    fails it rather than being mistaken for its own. Prefer `completed_audit_event_for`.
    """
    from audit.models import AuditEvent

    found = list(AuditEvent.objects.filter(action="inference.completed")[:2])
    if len(found) > 1:
        raise AssertionError(
            "more than one inference.completed record: wait with completed_audit_event_for(request_id=...)"
        )
    return found[0] if found else None


def completed_audit_event_for(*, request_id: str) -> Callable[[], Any]:
    """A query for `eventually`: the `inference.completed` record of the request sent with
    this X-Request-ID, or None while there is none yet."""

    def query() -> Any:
        from audit.models import AuditEvent

        return AuditEvent.objects.filter(action="inference.completed", request_id=request_id).first()

    return query
