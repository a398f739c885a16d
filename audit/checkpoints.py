"""Signed checkpoints of the chain's head, kept outside the database.

A checkpoint says "event N had hash H" under an Ed25519 signature. Someone who can rewrite the
database can recompute a whole chain or cut its tail, and the chain alone would still look
sound; a checkpoint they cannot re-sign, in a place they cannot reach, is what shows it. The
sink is a directory (`GATEHOUSE_AUDIT_CHECKPOINT_DIR`): mount write-once storage there, or a
bucket synced from it, in production.
"""

import base64
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from audit.sealing import audit_chain_head, audit_seal_pending

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    sequence: int
    hash: str
    written_at: str
    key_id: str
    signature: str = ""
    file: str = ""

    def signed_bytes(self) -> bytes:
        """What the signature covers: the chain position, its hash, when, and by which key."""
        body = {
            "sequence": self.sequence,
            "hash": self.hash,
            "written_at": self.written_at,
            "key_id": self.key_id,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


_SEED_BYTES = 32


def _key_from_setting() -> Ed25519PrivateKey | None:
    seed = settings.GATEHOUSE_AUDIT_SIGNING_KEY
    if not seed:
        return None
    try:
        raw = base64.b64decode(seed, validate=True)
    except ValueError:
        raw = b""
    if len(raw) != _SEED_BYTES:
        raise ImproperlyConfigured("GATEHOUSE_AUDIT_SIGNING_KEY must be the base64 of 32 random bytes.")
    return Ed25519PrivateKey.from_private_bytes(raw)


def signing_key() -> Ed25519PrivateKey:
    """The key from `GATEHOUSE_AUDIT_SIGNING_KEY` (base64 of 32 bytes), else from its file.

    Without either, a key is generated into the file once (owner-only). Every replica must
    share one key: in production give it through the environment or a mounted secret.
    """
    from_setting = _key_from_setting()
    if from_setting is not None:
        return from_setting
    path = Path(settings.GATEHOUSE_AUDIT_SIGNING_KEY_FILE)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
        logger.warning(
            "generated an audit signing key at %s; keep it, or set GATEHOUSE_AUDIT_SIGNING_KEY", path
        )
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return loaded


def public_key_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """A short name for a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_key_raw(key)).hexdigest()[:16]


def public_key_base64(key: Ed25519PublicKey) -> str:
    return base64.b64encode(public_key_raw(key)).decode()


def verification_keys() -> dict[str, Ed25519PublicKey]:
    """Every key a checkpoint may be signed with, by key id: the current signing key's
    public half and each retired one in GATEHOUSE_AUDIT_RETIRED_PUBLIC_KEYS (base64 of the
    32-byte public keys), so checkpoints sealed before a key rotation still verify."""
    current = signing_key().public_key()
    keys = {key_id(current): current}
    for encoded in settings.GATEHOUSE_AUDIT_RETIRED_PUBLIC_KEYS:
        try:
            raw = base64.b64decode(encoded, validate=True)
            retired = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            raise ImproperlyConfigured(
                "GATEHOUSE_AUDIT_RETIRED_PUBLIC_KEYS holds base64 Ed25519 public keys (32 bytes each); "
                f"{encoded[:12]}… is not one. `manage.py audit_public_key` prints the current one."
            ) from None
        keys[key_id(retired)] = retired
    return keys


def public_key_pem() -> str:
    return (
        signing_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def sign(data: bytes) -> str:
    return base64.b64encode(signing_key().sign(data)).decode()


def signature_valid(*, data: bytes, signature: str, public_key: Ed25519PublicKey) -> bool:
    try:
        public_key.verify(base64.b64decode(signature), data)
    except (InvalidSignature, ValueError):
        return False
    return True


def _sink() -> Path:
    return Path(settings.GATEHOUSE_AUDIT_CHECKPOINT_DIR)


def audit_checkpoint_write() -> Checkpoint | None:
    """Sign the chain's head, unless the last checkpoint already signed it. None if empty.

    Links what is pending into the chain first (`audit.sealing`), so the checkpoint covers
    every event committed before the call; only sealed heads are ever signed. Raises what the
    sealer raises (the database gone, say), before anything is written to the sink.
    """
    audit_seal_pending()
    head = audit_chain_head()
    if head[0] == 0:
        return None
    latest = checkpoint_latest()
    if latest and latest.sequence == head[0]:
        return latest
    key = signing_key()
    unsigned = Checkpoint(
        sequence=head[0],
        hash=head[1],
        written_at=timezone.now().isoformat(),
        key_id=key_id(key.public_key()),
    )
    checkpoint = Checkpoint(**{**asdict(unsigned), "signature": sign(unsigned.signed_bytes())})
    directory = _sink()
    directory.mkdir(parents=True, exist_ok=True)
    name = f"checkpoint-{checkpoint.sequence:012d}.json"
    body = {key: value for key, value in asdict(checkpoint).items() if key != "file"}
    # Written aside and renamed into place, so a reader never sees half a checkpoint.
    partial = directory / f".{name}.partial"
    partial.write_text(json.dumps(body, indent=2) + "\n")
    partial.replace(directory / name)
    return Checkpoint(**{**body, "file": name})


def _checkpoint_files() -> list[Path]:
    """The sink's checkpoint files, oldest first: names carry the zero-padded sequence."""
    directory = _sink()
    return sorted(directory.glob("checkpoint-*.json")) if directory.is_dir() else []


def _checkpoint_read(path: Path) -> Checkpoint | None:
    try:
        body = json.loads(path.read_text())
        return Checkpoint(
            sequence=int(body["sequence"]),
            hash=str(body["hash"]),
            written_at=str(body["written_at"]),
            key_id=str(body["key_id"]),
            signature=str(body["signature"]),
            file=path.name,
        )
    except (ValueError, KeyError, TypeError):
        return None


def checkpoints_read() -> list[Checkpoint]:
    """Every checkpoint in the sink, oldest first. Unreadable files count as failed ones."""
    found = [
        _checkpoint_read(path) or Checkpoint(sequence=-1, hash="", written_at="", key_id="", file=path.name)
        for path in _checkpoint_files()
    ]
    return sorted(found, key=lambda checkpoint: checkpoint.sequence)


def checkpoint_latest() -> Checkpoint | None:
    """The newest readable checkpoint, reading one file rather than the whole sink (which gains
    one every few minutes, and page views and each new checkpoint ask for this)."""
    for path in reversed(_checkpoint_files()):
        checkpoint = _checkpoint_read(path)
        if checkpoint is not None and checkpoint.sequence > 0:
            return checkpoint
    return None
