"""What drops the local caches (gatehouse.local_cache): any change to governance state.

Connected for every model the request path caches a fact from: users, their groups and
permissions, API keys, session families, teams, quota policies, models, versions, object
grants and audit subjects. Writes that bypass signals (`QuerySet.update`) announce
through `accounts.credential_events.credentials_changed_notify`, which every revocation
calls.
"""

from typing import Any

from django.apps import apps
from django.db.models.signals import m2m_changed, post_delete, post_save

from gatehouse.local_cache import local_caches_invalidate

CACHED_MODELS = (
    "accounts.User",
    "accounts.ApiKey",
    "accounts.RefreshFamily",
    "accounts.Team",
    "accounts.QuotaPolicy",
    "auth.Group",
    "guardian.UserObjectPermission",
    "guardian.GroupObjectPermission",
    "inference.Model",
    "inference.ModelVersion",
    "inference.Deployment",
    "spend.Budget",
    "guardrails.GuardrailPolicy",
    "audit.AuditSubject",
)
# Saves of only these fields change nothing the request path decides on.
_BOOKKEEPING_FIELDS = frozenset({"last_login", "last_used_at"})


def _saved(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    if update_fields and set(update_fields) <= _BOOKKEEPING_FIELDS:
        return
    local_caches_invalidate(reason=f"{sender._meta.label} {instance.pk} saved")


def _deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    local_caches_invalidate(reason=f"{sender._meta.label} {instance.pk} deleted")


def _relations_changed(sender: Any, action: str, **kwargs: Any) -> None:
    if action.startswith("post_"):
        local_caches_invalidate(reason=f"{sender._meta.label} {action}")


def local_cache_signals_connect() -> None:
    user_model = apps.get_model("accounts.User")
    group_model = apps.get_model("auth.Group")
    for label in CACHED_MODELS:
        model = apps.get_model(label)
        uid = f"gatehouse.local_cache.{label}"
        post_save.connect(_saved, sender=model, dispatch_uid=f"{uid}.saved")
        post_delete.connect(_deleted, sender=model, dispatch_uid=f"{uid}.deleted")
    for through in (
        user_model.groups.through,
        user_model.user_permissions.through,
        group_model.permissions.through,
    ):
        m2m_changed.connect(
            _relations_changed, sender=through, dispatch_uid=f"gatehouse.local_cache.{through._meta.label}"
        )
