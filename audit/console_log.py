"""The console's own change log feeds the trail.

Django's admin writes a `LogEntry` for every addition, change and deletion made through it.
The console site wraps each registered admin's logging so that every entry also becomes an
audit event, in the same transaction where the admin view runs in one. Services already
audit what they do; this adds who did it through the console and the admin's own account
of the change (fields changed), including for models no service covers.
"""

from collections.abc import Callable
from typing import Any

from django.contrib.admin import ModelAdmin
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry

from audit.services import audit_event_record

_ACTIONS = {ADDITION: "console.added", CHANGE: "console.changed", DELETION: "console.deleted"}


def console_log_entry_record(*, entry: LogEntry) -> None:
    content_type = entry.content_type
    audit_event_record(
        action=_ACTIONS.get(entry.action_flag, "console.logged"),
        actor=entry.user,
        target_type=f"{content_type.app_label}.{content_type.model}" if content_type else "",
        target_id=str(entry.object_id or ""),
        target_display=entry.object_repr,
        metadata={"change": entry.get_change_message(), "console_log_id": entry.pk},
    )


def _fed(log: Callable[..., Any]) -> Callable[..., Any]:
    def logged(*args: Any, **kwargs: Any) -> Any:
        result = log(*args, **kwargs)
        for entry in result if isinstance(result, list) else [result]:
            if isinstance(entry, LogEntry):
                console_log_entry_record(entry=entry)
        return result

    return logged


def console_admin_audited(model_admin: ModelAdmin[Any]) -> None:
    """Make `model_admin`'s change-log writes also append to the audit trail."""
    for name in ("log_addition", "log_change", "log_deletions"):
        setattr(model_admin, name, _fed(getattr(model_admin, name)))
