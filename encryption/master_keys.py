"""Master keys (key-encryption keys): they wrap data keys and never touch stored content.

`GATEHOUSE_ENCRYPTION_KEYS` names them, comma-separated, each `<id>:<base64 of 32 random
bytes>`; the first is the primary, under which new data keys are wrapped. To rotate, put a new
key first and keep the old ones after it: the maintenance task then re-wraps every data key
under the new one, starts a new data key, and re-encrypts stored content in the background.
Once `manage.py encryption_status` shows nothing under an old master key, drop it.

Unset, one key is generated into `GATEHOUSE_ENCRYPTION_KEY_FILE` the first time it is needed:
right for a checkout or one machine, wrong for several (`check --deploy` warns), because
every process that reads stored content needs the same master keys.
"""

import base64
import binascii
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

KEY_BYTES = 32
MAX_ID_CHARS = 64
_ID_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
_lock = threading.Lock()
_loaded: dict[tuple[str, str], "MasterKeys"] = {}


@dataclass(frozen=True)
class MasterKeys:
    primary: str
    keys: dict[str, bytes]


def master_keys_parse(text: str, *, source: str = "GATEHOUSE_ENCRYPTION_KEYS") -> MasterKeys:
    """Read `<id>:<base64>` entries; ImproperlyConfigured says which entry is wrong and why."""
    keys: dict[str, bytes] = {}
    for position, entry in enumerate((part.strip() for part in text.split(",") if part.strip()), start=1):
        key_id, separator, encoded = entry.partition(":")
        if not separator or not key_id or not set(key_id) <= _ID_CHARACTERS or len(key_id) > MAX_ID_CHARS:
            raise ImproperlyConfigured(
                f"{source}: entry {position} must be `<id>:<base64 of 32 random bytes>`, with an id of "
                f"letters, digits, '-', '_' or '.' (at most {MAX_ID_CHARS})."
            )
        try:
            material = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            material = b""
        if len(material) != KEY_BYTES:
            raise ImproperlyConfigured(
                f"{source}: key {key_id!r} must be the base64 of exactly {KEY_BYTES} random bytes, e.g. "
                "`python -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'`."
            )
        if key_id in keys:
            raise ImproperlyConfigured(f"{source}: key id {key_id!r} appears twice.")
        keys[key_id] = material
    if not keys:
        raise ImproperlyConfigured(f"{source} holds no key.")
    return MasterKeys(primary=next(iter(keys)), keys=keys)


def master_key_generate_entry() -> str:
    """A new `<id>:<base64>` entry, its id dated so that a list of them reads in order."""
    stamp = timezone.now().strftime("%Y%m%d%H%M%S")
    return f"k{stamp}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


def _file_text(path: Path) -> str:
    """The key file's text, creating it (owner-only, never overwritten) the first time.

    The key is written to a file of this process's own and linked into place, which fails if
    another process got there first: nobody ever reads a half-written key file.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        written = path.with_name(f".{path.name}.{os.getpid()}.new")
        descriptor = os.open(written, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(master_key_generate_entry() + "\n")
        try:
            os.link(written, path)
        except FileExistsError:
            pass  # another process wrote it first: read theirs
        finally:
            written.unlink(missing_ok=True)
    return path.read_text().strip()


def master_keys() -> MasterKeys:
    """The configured master keys: from the setting, else from the generated key file."""
    text = settings.GATEHOUSE_ENCRYPTION_KEYS
    path = str(settings.GATEHOUSE_ENCRYPTION_KEY_FILE)
    cached = _loaded.get((text, path))
    if cached is not None:
        return cached
    with _lock:
        if text:
            keys = master_keys_parse(text)
        else:
            keys = master_keys_parse(_file_text(Path(path)), source=f"the key file {Path(path).name}")
        _loaded[(text, path)] = keys
        return keys
