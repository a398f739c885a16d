"""What encryption at rest looks like now: master keys, data keys, and what each still seals."""

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

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
