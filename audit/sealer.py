"""The background sealer: a daemon thread in each process that has written audit rows.

Every GATEHOUSE_AUDIT_SEAL_INTERVAL seconds (1 by default) it seals what waits with
`audit_seal_pending(wait=False)`, one transaction a look: it only tries the chain's lock, so
of the web and worker processes that run one, one seals at a time and the rest carry on. A row
is therefore sealed about one interval after it commits, by whichever process gets there
first, including rows left by a process that died before its own sealer ran. This works the same in the embedded default (one process, SQLite) and in
production (several web processes and Celery workers on PostgreSQL). Where no process writes,
nothing waits; the Celery beat task `audit.tasks.audit_seal_pending`, `manage.py audit_seal`,
a checkpoint and `manage.py audit_verify` also seal what is pending.

Failure mode: an error while sealing (database gone, a conflict) is logged with its traceback
and retried on the next tick; the rows stay unsealed meanwhile (/metrics shows how many and how
old, `gatehouse_audit_pending_events`), never lost. The thread holds one database connection
of its own. GATEHOUSE_AUDIT_SEAL_INTERVAL = 0 starts no thread (the test suite seals
explicitly; a deployment can run `manage.py audit_seal --loop` beside the web tier instead).
"""

import logging
import os
import threading

from django.conf import settings
from django.db import connection

from gatehouse.metrics import AUDIT_SEALER_LOOKS

logger = logging.getLogger(__name__)

# Each look is a transaction, idle or busy, in every process that writes audit rows: once a
# second halves what twice a second cost the database, for rows sealed about a second after
# they commit. It also lets PostgreSQL report each look's transaction at once (a busy
# connection's counts are flushed at most once a second), so P9's count can take the looks off.
DEFAULT_SEAL_INTERVAL = 1.0


def audit_seal_interval() -> float:
    """Seconds between the background sealer's looks; 0 or less: no background sealer."""
    return float(getattr(settings, "GATEHOUSE_AUDIT_SEAL_INTERVAL", DEFAULT_SEAL_INTERVAL))


def audit_seal_tick() -> None:
    """One look: seal what is pending unless another sealer is at it. Never raises: an error
    is logged and the connection dropped, so the next tick starts on a fresh one.

    On PostgreSQL a look is one transaction, whether or not anything was pending: asking first
    would make each busy look two, and under load (when rows are always pending) that was a
    fifth of a transaction more per request. Each look that opens one is counted
    (`gatehouse_audit_sealer_looks`), so what the sealer costs the database can be told apart
    from what requests cost it."""
    from audit.sealing import audit_pending_exists, audit_seal_pending

    try:
        # On SQLite a sealing transaction takes the database's write lock: only when needed.
        if connection.vendor == "postgresql" or audit_pending_exists():
            AUDIT_SEALER_LOOKS.inc()  # as it starts: a look that fails still rolls a transaction back
            audit_seal_pending(wait=False)
    except Exception:
        logger.exception("audit sealer: sealing failed; the rows stay unsealed until the next try")
        connection.close()


class _SealerThread(threading.Thread):
    def __init__(self, interval: float) -> None:
        super().__init__(name="audit-sealer", daemon=True)
        self.pid = os.getpid()
        self.interval = interval
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.wait(self.interval):
                audit_seal_tick()
        finally:
            connection.close()


_guard = threading.Lock()
_running: _SealerThread | None = None


def audit_sealer_ensure() -> None:
    """Start this process's background sealer unless it runs already (or the interval is 0).

    Called on every append, so the common case (running, in this process) is a few attribute
    reads. A forked child (a Celery pool process) does not inherit its parent's thread: the
    process id tells, and the child starts its own.
    """
    global _running  # noqa: PLW0603 - one sealer per process
    running = _running
    if running is not None and running.pid == os.getpid() and running.is_alive():
        return
    interval = audit_seal_interval()
    if interval <= 0:
        return
    with _guard:
        running = _running
        if running is None or running.pid != os.getpid() or not running.is_alive():
            _running = _SealerThread(interval)
            _running.start()


def audit_sealer_stop(*, timeout: float = 5.0) -> None:
    """Stop this process's background sealer, if any, and wait for it (tests, shutdown hooks).
    A batch in progress finishes (or rolls back) first."""
    global _running
    with _guard:
        running, _running = _running, None
    if running is not None and running.pid == os.getpid():
        running.stopping.set()
        running.join(timeout)
