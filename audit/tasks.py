"""Celery tasks of the audit app: thin wrappers over its services."""

from celery import shared_task

from audit.checkpoints import audit_checkpoint_write as _checkpoint_write
from audit.sealing import audit_seal_pending as _seal_pending


@shared_task(name="audit.tasks.audit_checkpoint_write", ignore_result=True)
def audit_checkpoint_write() -> int | None:
    """Seal the chain's head into the checkpoint sink; returns the sealed sequence number."""
    checkpoint = _checkpoint_write()
    return checkpoint.sequence if checkpoint else None


@shared_task(name="audit.tasks.audit_seal_pending", ignore_result=True)
def audit_seal_pending() -> int:
    """Link what is pending into the chain, if no other sealer is at it; returns how many.

    The processes that write seal on their own (`audit.sealer`); beat runs this as well, so
    rows left by a process that died are sealed even while nothing else writes.
    """
    return _seal_pending(wait=False).sealed


@shared_task(name="audit.tasks.audit_verify", ignore_result=True)
def audit_verify() -> bool:
    """Beat's `audit-verify`: seal, walk the whole trail and record the run (for /metrics and
    the alerts); returns whether the trail verifies."""
    from audit.models import VerificationRun
    from audit.verification import audit_verify_run

    return audit_verify_run(source=VerificationRun.Source.SCHEDULE).ok


# A worker lost mid-task (killed, out of memory) must not lose the request: the message is
# acknowledged only once the task ends, and handed back if the worker dies. The claim inside
# makes the second delivery harmless.
@shared_task(
    name="audit.tasks.compliance_export_run", ignore_result=True, acks_late=True, reject_on_worker_lost=True
)
def compliance_export_run(export_id: str) -> None:
    from audit.compliance import compliance_export_run as run

    run(export_id=export_id)


@shared_task(
    name="audit.tasks.compliance_erasure_run", ignore_result=True, acks_late=True, reject_on_worker_lost=True
)
def compliance_erasure_run(erasure_id: str) -> None:
    from audit.compliance import compliance_erasure_run as run

    run(erasure_id=erasure_id)


@shared_task(name="audit.tasks.compliance_requests_sweep", ignore_result=True)
def compliance_requests_sweep() -> int:
    """Re-queue requests whose worker was lost, and delete expired export files."""
    from audit.compliance import compliance_exports_expire
    from audit.compliance import compliance_requests_sweep as sweep

    compliance_exports_expire()
    return sweep()


@shared_task(name="audit.tasks.retention_purge", ignore_result=True)
def retention_purge() -> dict[str, int]:
    from audit.compliance import retention_conversations_purge, retention_usage_records_purge

    return {
        "conversations": retention_conversations_purge(),
        "usage_records": retention_usage_records_purge(),
    }
