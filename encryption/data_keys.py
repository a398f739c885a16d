"""Data keys in use: the current one for writing, any one by id for reading.

A process keeps the current key for `GATEHOUSE_ENCRYPTION_KEY_CACHE_SECONDS`, so a rotation
reaches every process within that time; the re-encryption never deletes a retired key until
twice that long after it was retired (`encryption.reencryption`). Unwrapped keys are kept by id for as long as the process
lives (they never change).

A key is remembered only once the transaction that read or created it has committed: a key
created inside a transaction that rolls back must not be used afterwards, because rows
written with it would point at a key that does not exist.
"""

import secrets
import threading
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from encryption.master_keys import KEY_BYTES, MasterKeys, master_keys
from encryption.models import DataKey

NONCE_BYTES = 12


class DataKeyUnavailable(Exception):
    """Stored content names a data key that is gone, or that no configured master key unwraps."""


@dataclass(frozen=True)
class DataKeyInUse:
    id: int
    cipher: AESGCM


class _Memory:
    """What this process remembers: the current key (with when it was read) and keys by id."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.current: tuple[float, DataKeyInUse] | None = None
        self.by_id: dict[int, AESGCM] = {}


_memory = _Memory()


def _wrap_context(master_key_id: str) -> bytes:
    return f"gatehouse-data-key:{master_key_id}".encode()


def data_key_wrap(*, material: bytes, master_key_id: str, keys: MasterKeys) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = AESGCM(keys.keys[master_key_id]).encrypt(nonce, material, _wrap_context(master_key_id))
    return nonce + sealed


def data_key_unwrap(*, key: DataKey, keys: MasterKeys) -> bytes:
    """The key's 32 bytes; DataKeyUnavailable when its master key is not configured (or wrong)."""
    master = keys.keys.get(key.master_key_id)
    if master is None:
        raise DataKeyUnavailable(
            f"data key {key.pk} is wrapped under master key {key.master_key_id!r}, which is not in "
            "GATEHOUSE_ENCRYPTION_KEYS; add it back (after the primary) to read what it protects."
        )
    wrapped = bytes(key.wrapped)
    try:
        return AESGCM(master).decrypt(
            wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _wrap_context(key.master_key_id)
        )
    except InvalidTag:
        raise DataKeyUnavailable(
            f"master key {key.master_key_id!r} does not unwrap data key {key.pk}: the configured key "
            "with that id is not the one it was wrapped under."
        ) from None


def _remember(key: DataKeyInUse, *, current: bool) -> None:
    def remember() -> None:
        _memory.by_id[key.id] = key.cipher
        if current:
            _memory.current = (time.monotonic(), key)

    transaction.on_commit(remember)


def _in_use(key: DataKey, keys: MasterKeys) -> DataKeyInUse:
    return DataKeyInUse(id=key.pk, cipher=AESGCM(data_key_unwrap(key=key, keys=keys)))


@transaction.atomic
def data_key_start(*, keys: MasterKeys) -> DataKey:
    """Make a new data key the current one, retiring every other; returns it."""
    now = timezone.now()
    DataKey.objects.filter(retired_at__isnull=True).update(retired_at=now)
    material = secrets.token_bytes(KEY_BYTES)
    return DataKey.objects.create(
        wrapped=data_key_wrap(material=material, master_key_id=keys.primary, keys=keys),
        master_key_id=keys.primary,
    )


def data_key_current() -> DataKeyInUse:
    """The key that encrypts what is written now, starting one when there is none.

    There is none at first, after a rotation retired it, and after a new primary master key was
    configured (a data key wrapped under an older master key is never the current one).
    """
    cached = _memory.current
    if cached is not None and time.monotonic() - cached[0] < settings.GATEHOUSE_ENCRYPTION_KEY_CACHE_SECONDS:
        return cached[1]
    keys = master_keys()
    with _memory.lock:
        row = (
            DataKey.objects.filter(retired_at__isnull=True, master_key_id=keys.primary)
            .order_by("-id")
            .first()
        )
        if row is None:
            row = data_key_start(keys=keys)
        key = _in_use(row, keys)
    _remember(key, current=True)
    return key


def data_key_cipher(*, key_id: int) -> AESGCM:
    """The cipher of data key `key_id`, to decrypt; DataKeyUnavailable when it cannot be had."""
    cipher = _memory.by_id.get(key_id)
    if cipher is not None:
        return cipher
    row = DataKey.objects.filter(pk=key_id).first()
    if row is None:
        raise DataKeyUnavailable(f"data key {key_id} does not exist (deleted while content still used it?).")
    key = _in_use(row, master_keys())
    _remember(key, current=False)
    return key.cipher


def data_key_forget(*, key_id: int) -> None:
    """Drop one unwrapped key (it failed to decrypt: the id may now name another key)."""
    _memory.by_id.pop(key_id, None)


def data_keys_forget() -> None:
    """Drop what this process remembers (the suite, between tests; a rotation, in its process)."""
    _memory.current = None
    _memory.by_id.clear()
