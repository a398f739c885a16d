"""The console's own change log feeds the trail.

Django's admin writes a `LogEntry` for every addition, change and deletion made through it.
The console site wraps each registered admin's logging so that every entry also becomes an
audit event, in the same transaction where the admin view runs in one. Services already
audit what they do; this adds who did it through the console and the admin's own account
of the change (fields changed), including for models no service covers.

An entry about a person (their user page, or an object of theirs: a key, a grant, a quota
policy) carries the person's pseudonym, so that their erasure blanks its display text as it
does every other row about them. The chained metadata names no object, only field names.
"""

import json
from collections.abc import Callable
from typing import Any

from django.contrib.admin import ModelAdmin
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import models

from audit.services import audit_event_record

_ACTIONS = {ADDITION: "console.added", CHANGE: "console.changed", DELETION: "console.deleted"}

# Models whose every row belongs to one person, by label: the field that holds the person.
# A user's own page is about that user and needs no entry here.
_SUBJECT_FIELDS: dict[str, str] = {
    "accounts.apikey": "user",
    "accounts.quotapolicy": "user",
    "guardian.userobjectpermission": "user",
    "inference.personmodelgrant": "user",
    "inference.conversation": "owner",
}


def console_subject_field_register(*, model_label: str, field: str) -> None:
    """Declare that rows of `model_label` ("app.model") belong to the user in `field`."""
    _SUBJECT_FIELDS[model_label.lower()] = field


def console_subject_fields() -> dict[str, str]:
    """Every model label whose rows belong to a person, with the field that names them."""
    return dict(_SUBJECT_FIELDS)


def console_subject_for(*, obj: models.Model) -> AbstractBaseUser | None:
    """The person a console object is about: the user itself, or the owner of one of theirs."""
    user_model = get_user_model()
    if isinstance(obj, user_model):
        return obj
    field = _SUBJECT_FIELDS.get(obj._meta.label_lower)
    subject = getattr(obj, field, None) if field else None
    return subject if isinstance(subject, user_model) else None


def _entry_object(entry: LogEntry) -> models.Model | None:
    """The object the entry is about; still there for deletions, which are logged first."""
    model = entry.content_type.model_class() if entry.content_type else None
    if model is None or entry.object_id is None:
        return None
    try:
        found: models.Model | None = model._base_manager.filter(pk=entry.object_id).first()
    except (ValueError, TypeError):
        return None
    return found


def _part_text(verb: str, detail: dict[str, Any]) -> str:
    name = str(detail.get("name", ""))
    if verb == "changed":
        fields = ", ".join(str(field) for field in detail.get("fields", []))
        return f"Changed {fields}" + (f" for {name}" if name else "") + "."
    return f"{verb.capitalize()} {name}.".replace(" .", ".")


def _change_text(entry: LogEntry) -> str:
    """The admin's account of the change, naming fields and kinds of related object but never
    a related object itself (an inline's text could be a username, and this is chained)."""
    try:
        parts = json.loads(entry.change_message or "[]")
    except ValueError:
        return str(entry.get_change_message())
    inline = isinstance(parts, list) and any(
        isinstance(detail, dict) and "object" in detail
        for part in parts
        if isinstance(part, dict)
        for detail in part.values()
    )
    if not inline:
        return str(entry.get_change_message())
    return " ".join(
        _part_text(verb, detail if isinstance(detail, dict) else {})
        for part in parts
        if isinstance(part, dict)
        for verb, detail in part.items()
    )


def console_log_entry_record(*, entry: LogEntry) -> None:
    content_type = entry.content_type
    obj = _entry_object(entry)
    audit_event_record(
        action=_ACTIONS.get(entry.action_flag, "console.logged"),
        actor=entry.user,
        target_type=f"{content_type.app_label}.{content_type.model}" if content_type else "",
        target_id=str(entry.object_id or ""),
        target_display=entry.object_repr,
        target_subject=console_subject_for(obj=obj) if obj is not None else None,
        metadata={"change": _change_text(entry), "console_log_id": entry.pk},
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
