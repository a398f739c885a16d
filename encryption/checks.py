"""System checks: the master keys parse, and every stored data key can be unwrapped by one."""

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

from encryption.master_keys import master_keys, master_keys_parse


@register(Tags.security)
def master_keys_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not settings.GATEHOUSE_ENCRYPTION_KEYS:
        return []
    try:
        master_keys_parse(settings.GATEHOUSE_ENCRYPTION_KEYS)
    except ImproperlyConfigured as wrong:
        return [Error(str(wrong), id="gatehouse.E010")]
    return []


@register(Tags.security, deploy=True)
def master_keys_deploy_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if settings.GATEHOUSE_ENCRYPTION_KEYS:
        return []
    return [
        checks.Warning(
            "GATEHOUSE_ENCRYPTION_KEYS is not set: stored conversations and exports are encrypted under "
            "a master key generated into GATEHOUSE_ENCRYPTION_KEY_FILE on this machine.",
            hint="Every process that reads them needs the same key: set GATEHOUSE_ENCRYPTION_KEYS from "
            "your secret store (docs/production.md, Encryption at rest).",
            id="gatehouse.W011",
        )
    ]


@register(Tags.database)
def data_keys_check(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Run where the database may be read (`migrate`, `check --database default`)."""
    from encryption.models import DataKey

    if not databases or "default" not in databases:
        return []
    try:
        configured = set(master_keys().keys)
        needed = set(DataKey.objects.values_list("master_key_id", flat=True).distinct())
    except ImproperlyConfigured:
        return []  # master_keys_check says what is wrong
    except DatabaseError:
        return []  # not migrated yet: nothing is stored
    return [
        Error(
            f"data keys are wrapped under master key {missing!r}, which is not configured: what they "
            "encrypted cannot be read.",
            hint="Add it back to GATEHOUSE_ENCRYPTION_KEYS, after the primary, until "
            "`manage.py encryption_status` shows nothing under it.",
            id="gatehouse.E012",
        )
        for missing in sorted(needed - configured)
    ]
