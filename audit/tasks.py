"""Celery tasks of the audit app: thin wrappers over its services."""

from celery import shared_task

from audit.checkpoints import audit_checkpoint_write as _checkpoint_write


@shared_task(name="audit.tasks.audit_checkpoint_write", ignore_result=True)
def audit_checkpoint_write() -> int | None:
    """Seal the chain's head into the checkpoint sink; returns the sealed sequence number."""
    checkpoint = _checkpoint_write()
    return checkpoint.sequence if checkpoint else None
