"""Key rotation: new data keys, re-wrapping under a new master key, and the background pass."""

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from encryption.data_keys import (
    DataKeyUnavailable,
    data_key_current,
    data_key_start,
    data_key_unwrap,
    data_key_wrap,
    data_keys_forget,
)
from encryption.master_keys import master_keys
from encryption.models import DataKey
from encryption.reencryption import reencryption_run

logger = logging.getLogger(__name__)


def data_key_rotate() -> DataKey:
    """Start a new data key now; what the old one sealed moves over in the background.

    Other processes take the new key within `GATEHOUSE_ENCRYPTION_KEY_CACHE_SECONDS`; until the re-encryption has
    run, the old key still decrypts what it sealed.
    """
    key = data_key_start(keys=master_keys())
    transaction.on_commit(data_keys_forget)
    return key


def data_keys_rewrap() -> int:
    """Wrap every data key under the primary master key; returns how many were re-wrapped.

    Afterwards no stored key needs an older master key, so it can be dropped from the
    environment. A key whose master key is missing is left (and logged): the content it
    protects cannot be read until that master key is configured again.
    """
    keys = master_keys()
    rewrapped = 0
    for key in DataKey.objects.exclude(master_key_id=keys.primary):
        try:
            material = data_key_unwrap(key=key, keys=keys)
        except DataKeyUnavailable as unavailable:
            logger.error("cannot re-wrap: %s", unavailable)
            continue
        wrapped = data_key_wrap(material=material, master_key_id=keys.primary, keys=keys)
        rewrapped += DataKey.objects.filter(pk=key.pk, master_key_id=key.master_key_id).update(
            wrapped=wrapped, master_key_id=keys.primary
        )
    return rewrapped


def encryption_maintain(*, full_pass: bool = False) -> dict[str, Any]:
    """The scheduled work: rotate what is due, re-wrap, and re-encrypt off retired keys.

    - A new primary master key starts a new data key (`data_key_current` never uses a key
      wrapped under an older master key) and every data key is re-wrapped under it.
    - A data key older than `GATEHOUSE_ENCRYPTION_DATA_KEY_DAYS` is rotated.
    - While any key is retired, a pass re-encrypts under the current key what the retired keys
      sealed, and deletes those nothing uses any more; `full_pass` makes that pass run anyway,
      which also encrypts any plain text found (rows written around Gatehouse).
    Safe to run in several workers at once (each rewrite is a compare and swap). Returns a
    JSON-safe summary.
    """
    current = data_key_current()
    age_limit = timezone.now() - timedelta(days=settings.GATEHOUSE_ENCRYPTION_DATA_KEY_DAYS)
    rotated = DataKey.objects.filter(pk=current.id, created_at__lt=age_limit).exists()
    if rotated:
        data_key_rotate()
    else:
        # A second process may have started a key at the same moment: one current key only.
        DataKey.objects.filter(retired_at__isnull=True).exclude(pk=current.id).update(
            retired_at=timezone.now()
        )
    summary: dict[str, Any] = {"rotated": rotated, "rewrapped": data_keys_rewrap()}
    if full_pass or DataKey.objects.filter(retired_at__isnull=False).exists():
        report = reencryption_run()
        summary.update(report.as_dict())
        if report.rows_rewritten or report.files_rewritten or report.unreadable:
            logger.info("re-encryption pass: %s", summary)
    return summary
