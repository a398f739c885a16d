"""Sealing on demand: what the background sealer (off in the test suite) does a moment later."""

from typing import TypeVar

from audit.models import AuditEvent
from audit.sealing import audit_seal_pending

E = TypeVar("E", bound=AuditEvent)


def sealed(*events: E) -> list[E]:
    """Seal everything pending now and return `events` re-read, with their sequence and hash."""
    audit_seal_pending()
    for event in events:
        event.refresh_from_db()
    return list(events)
