"""Re-encryption: moving stored content from retired data keys to the current one.

It walks every encrypted column (any model field that is an `EncryptedTextField`) and every
sealed file a registered source names, in primary-key order and batches, and rewrites what is
not under the current key. A row is rewritten only if it still holds what was read (compare and
swap), so a write or a delete racing the pass wins and nothing is lost. Rows a process writes
while it still holds a just-retired key are caught because a retired key is deleted only when a
whole pass that began twice `GATEHOUSE_ENCRYPTION_KEY_CACHE_SECONDS` after its retirement found
nothing under it.
"""

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import models
from django.db.models.functions import Cast
from django.utils import timezone

from encryption.data_keys import DataKeyUnavailable, data_key_current
from encryption.envelope import ContentUnreadable, text_open, token_key_id
from encryption.fields import EncryptedTextField
from encryption.files import FileUnreadable, SealedFileWriter, sealed_file_key_id, sealed_file_open
from encryption.models import DataKey

BATCH_ROWS = 500


def _always() -> bool:
    return True


@dataclass(frozen=True)
class SealedFile:
    """A sealed file a source names; `wanted` says whether the source still names it.

    The pass asks `wanted` again after it has put the re-encrypted copy in place: a file its
    owner deleted meanwhile (an export expired, or erased with its person) must not come back.
    """

    path: Path
    purpose: str
    wanted: Callable[[], bool] = _always


_file_sources: list[Callable[[], Iterable[SealedFile]]] = []


def sealed_files_register(source: Callable[[], Iterable[SealedFile]]) -> None:
    """Let the pass find an app's sealed files (the audit app's exports register here)."""
    if source not in _file_sources:
        _file_sources.append(source)


@dataclass
class ReencryptionReport:
    """What a pass did; `left` counts, by data key id, what it could not move off that key."""

    rows_rewritten: int = 0
    files_rewritten: int = 0
    unreadable: int = 0
    left: Counter[int] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_rewritten": self.rows_rewritten,
            "files_rewritten": self.files_rewritten,
            "unreadable": self.unreadable,
            "left": {str(key): count for key, count in sorted(self.left.items())},
        }


def sealed_files() -> Iterator[SealedFile]:
    for source in _file_sources:
        yield from source()


def encrypted_columns() -> list[tuple[type[models.Model], EncryptedTextField]]:
    return [
        (model, column)
        for model in apps.get_models()
        for column in model._meta.concrete_fields
        if isinstance(column, EncryptedTextField)
    ]


def column_stored_values(*, model: type[models.Model], field_name: str) -> Iterator[tuple[Any, str | None]]:
    """(primary key, stored value exactly as in the database) for every row, in batches."""
    stored = Cast(field_name, output_field=models.TextField())
    last: Any = None
    while True:
        rows = model._default_manager.order_by("pk").annotate(stored_value=stored)
        if last is not None:
            rows = rows.filter(pk__gt=last)
        batch = list(rows.values_list("pk", "stored_value")[:BATCH_ROWS])
        if not batch:
            return
        yield from batch
        last = batch[-1][0]


def column_reencrypt(
    *, model: type[models.Model], field_name: str, current_key_id: int, report: ReencryptionReport
) -> None:
    """Seal every value of one column not under `current_key_id` again (plain text included)."""
    column = model._meta.get_field(field_name)
    if not isinstance(column, EncryptedTextField):
        raise TypeError(f"{model._meta.label}.{field_name} is not an encrypted column.")
    purpose = column.purpose
    stored_expression = Cast(field_name, output_field=models.TextField())
    for pk, stored in column_stored_values(model=model, field_name=field_name):
        key_id = None if stored is None else token_key_id(stored)
        if stored is None or key_id == current_key_id:
            continue
        try:
            plain = stored if key_id is None else text_open(token=stored, purpose=purpose)
        except (ContentUnreadable, DataKeyUnavailable):
            report.unreadable += 1
            report.left[key_id or 0] += 1
            continue
        same_row = model._default_manager.filter(pk=pk).annotate(stored_value=stored_expression)
        # Nothing updated: the row changed or went meanwhile, and the writer's value stands.
        if same_row.filter(stored_value=stored).update(**{field_name: plain}):
            report.rows_rewritten += 1


def _file_reencrypt(sealed: SealedFile, current_key_id: int, report: ReencryptionReport) -> None:
    if not sealed.path.is_file():
        return
    key_id = sealed_file_key_id(path=sealed.path)
    if key_id == current_key_id:
        return
    partial = sealed.path.with_name(f".{sealed.path.name}.reencrypting")
    try:  # a copy that fails (whatever the error) deletes its partial file: see SealedFileWriter
        with SealedFileWriter(path=partial, purpose=sealed.purpose) as writer:
            if key_id is None:
                with sealed.path.open("rb") as plain:
                    _copy(plain, writer)
            else:
                with sealed_file_open(path=sealed.path, purpose=sealed.purpose) as opened:
                    _copy(opened, writer)
    except (FileUnreadable, DataKeyUnavailable):
        report.unreadable += 1
        report.left[key_id or 0] += 1
        return
    if not sealed.path.is_file():  # deleted while it was copied
        partial.unlink(missing_ok=True)
        return
    partial.replace(sealed.path)
    if not sealed.wanted():  # deleted between that look and the replace: delete it again
        sealed.path.unlink(missing_ok=True)
        return
    report.files_rewritten += 1


def _copy(source: Any, writer: SealedFileWriter) -> None:
    while block := source.read(1024 * 1024):
        writer.write(block)


def reencryption_run() -> ReencryptionReport:
    """One pass over all encrypted content, then delete the retired keys nothing uses any more."""
    started = timezone.now()
    current = data_key_current()
    report = ReencryptionReport()
    for model, column in encrypted_columns():
        column_reencrypt(model=model, field_name=column.name, current_key_id=current.id, report=report)
    for sealed in sealed_files():
        _file_reencrypt(sealed, current.id, report)
    # Twice the time a process may keep using a key after it was retired.
    grace = started - timedelta(seconds=2 * settings.GATEHOUSE_ENCRYPTION_KEY_CACHE_SECONDS)
    DataKey.objects.filter(retired_at__lt=grace).exclude(pk__in=list(report.left)).delete()
    return report
