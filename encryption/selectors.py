"""What encryption at rest looks like now: master keys, data keys, and what each still seals."""

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Max, Min, Q

from encryption.envelope import token_key_id
from encryption.files import sealed_file_key_id
from encryption.master_keys import master_keys
from encryption.models import DataKey
from encryption.reencryption import column_stored_values, encrypted_columns, sealed_files

PLAIN = "plain"


@dataclass(frozen=True)
class DataKeyStatus:
    id: int
    master_key_id: str
    created_at: datetime
    retired_at: datetime | None
    rows: int
    files: int


@dataclass(frozen=True)
class EncryptionStatus:
    primary_master_key: str
    master_keys: list[str]
    data_keys: list[DataKeyStatus]
    # Rows and files not encrypted at all (written around Gatehouse, or before it encrypted).
    plain_rows: int
    plain_files: int

    @property
    def master_keys_in_use(self) -> set[str]:
        return {key.master_key_id for key in self.data_keys}


def encryption_status() -> EncryptionStatus:
    """Reads every encrypted column's stored values (key ids only): an operator's tool, not a hot path."""
    rows: Counter[int | str] = Counter()
    for model, column in encrypted_columns():
        for _, stored in column_stored_values(model=model, field_name=column.name):
            if stored is not None:
                rows[token_key_id(stored) or PLAIN] += 1
    files: Counter[int | str] = Counter()
    for sealed in sealed_files():
        if sealed.path.is_file():
            files[sealed_file_key_id(path=sealed.path) or PLAIN] += 1
    keys = master_keys()
    return EncryptionStatus(
        primary_master_key=keys.primary,
        master_keys=list(keys.keys),
        data_keys=[
            DataKeyStatus(
                id=key.pk,
                master_key_id=key.master_key_id,
                created_at=key.created_at,
                retired_at=key.retired_at,
                rows=rows[key.pk],
                files=files[key.pk],
            )
            for key in DataKey.objects.order_by("id")
        ],
        plain_rows=rows[PLAIN],
        plain_files=files[PLAIN],
    )


@dataclass(frozen=True)
class DataKeyFigures:
    """The data keys' dates, as /metrics exports them for the rotation and re-encryption alerts."""

    # When the current data key (the newest not retired) was created; None: none yet.
    current_created_at: datetime | None
    # Retired keys not yet deleted: what they sealed still waits to be re-encrypted.
    retired: int
    # When the oldest of those was retired; None: there is none.
    oldest_retired_at: datetime | None


def encryption_key_figures() -> DataKeyFigures:
    """One aggregate query over the data keys (a handful of rows): cheap enough for each scrape."""
    found = DataKey.objects.aggregate(
        current_created_at=Max("created_at", filter=Q(retired_at__isnull=True)),
        retired=Count("pk", filter=Q(retired_at__isnull=False)),
        oldest_retired_at=Min("retired_at"),
    )
    return DataKeyFigures(
        current_created_at=found["current_created_at"],
        retired=int(found["retired"]),
        oldest_retired_at=found["oldest_retired_at"],
    )
