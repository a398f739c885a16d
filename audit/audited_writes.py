"""A setting saved or deleted together with its audit record: `<action>.created`,
`<action>.changed` (before and after) or `<action>.deleted`, in one transaction.

For the objects an admin configures (quota policies, budgets, guardrail policies, webhooks):
`state` says what of one goes on the record (ids, amounts as text; never a secret).
"""

from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import models, transaction

from audit.services import audit_event_record

M = TypeVar("M", bound=models.Model)


@transaction.atomic
def audited_save(
    *, instance: M, actor: AbstractBaseUser, action: str, state: Callable[[M], dict[str, Any]]
) -> M:
    """Validate and save `instance`, recording it; raises ValidationError, and then nothing is
    written."""
    manager = type(instance)._default_manager
    before = state(manager.select_for_update().get(pk=instance.pk)) if instance.pk else None
    instance.full_clean()
    instance.save()
    audit_event_record(
        action=f"{action}.changed" if before else f"{action}.created",
        actor=actor,
        target=instance,
        metadata={"before": before, "after": state(instance)},
    )
    return instance


@transaction.atomic
def audited_delete(
    *, instance: M, actor: AbstractBaseUser, action: str, state: Callable[[M], dict[str, Any]]
) -> None:
    audit_event_record(
        action=f"{action}.deleted", actor=actor, target=instance, metadata={"before": state(instance)}
    )
    instance.delete()
