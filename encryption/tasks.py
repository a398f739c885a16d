"""Celery tasks of the encryption app: thin wrappers over its services."""

from typing import Any

from celery import shared_task

from encryption.services import encryption_maintain as _maintain


@shared_task(name="encryption.tasks.encryption_maintain", ignore_result=True)
def encryption_maintain() -> dict[str, Any]:
    """Rotate what is due, re-wrap under the primary master key, re-encrypt off retired keys."""
    return _maintain()
