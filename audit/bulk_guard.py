"""Bulk writes on audited models are audited too.

`QuerySet.update()`, `bulk_create()`, `bulk_update()` and `delete()` skip `save()`, signals
and so the services that audit. Audited models use `AuditedQuerySet`, which records one
event per bulk write (the model, the fields, the ids) in the write's own transaction, so a
shell session or a hasty data fix cannot change them off the record. Fields a model lists
in `AUDIT_EXEMPT_FIELDS` (bookkeeping such as `last_used_at`) update without an event.
"""

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from django.db import models, transaction

from audit.models import AuditEvent
from audit.services import audit_event_record

_M = TypeVar("_M", bound=models.Model)
# Ids beyond this many are counted, not listed, to keep one event a sensible size.
_IDS_LISTED = 1000


def _record(model: type[models.Model], verb: str, ids: Sequence[Any], fields: Iterable[str] = ()) -> None:
    audit_event_record(
        action=f"{model._meta.label_lower}.bulk_{verb}",
        actor_kind=AuditEvent.ActorKind.SYSTEM,
        actor_display="bulk write",
        target_type=model._meta.label_lower,
        metadata={
            "count": len(ids),
            "ids": [str(pk) for pk in ids[:_IDS_LISTED]],
            "fields": sorted(fields),
        },
    )


class AuditedQuerySet(models.QuerySet[_M]):
    def _exempt(self, fields: Iterable[str]) -> bool:
        return set(fields) <= set(getattr(self.model, "AUDIT_EXEMPT_FIELDS", ()))

    def update(self, **kwargs: Any) -> int:
        if self._exempt(kwargs):
            return super().update(**kwargs)
        with transaction.atomic(using=self.db):
            ids = list(self.values_list("pk", flat=True))
            count = super().update(**kwargs)
            _record(self.model, "updated", ids, kwargs)
        return count

    def bulk_create(self, objs: Iterable[_M], *args: Any, **kwargs: Any) -> list[_M]:
        with transaction.atomic(using=self.db):
            created = super().bulk_create(objs, *args, **kwargs)
            _record(self.model, "created", [obj.pk for obj in created])
        return created

    def bulk_update(self, objs: Iterable[_M], fields: Iterable[str], batch_size: int | None = None) -> int:
        objs, fields = list(objs), list(fields)
        if self._exempt(fields):
            return super().bulk_update(objs, fields, batch_size)
        with transaction.atomic(using=self.db):
            count = super().bulk_update(objs, fields, batch_size)
            _record(self.model, "updated", [obj.pk for obj in objs], fields)
        return count

    def delete(self) -> tuple[int, dict[str, int]]:
        with transaction.atomic(using=self.db):
            ids = list(self.values_list("pk", flat=True))
            result = super().delete()
            _record(self.model, "deleted", ids)
        return result
