"""Text sealed under a data key, as one printable token that fits a text column.

A token is `enc1:<data key id>:<base64url of nonce + AES-GCM ciphertext and tag>`. The key id
is in the clear so that the re-encryption can tell, without decrypting, which rows still use a
retired key. What is sealed is bound to its purpose (the column it belongs in) as associated
data: a token copied into another column does not decrypt.
"""

import base64
import binascii
import secrets

from cryptography.exceptions import InvalidTag

from encryption.data_keys import (
    NONCE_BYTES,
    DataKeyUnavailable,
    data_key_cipher,
    data_key_current,
    data_key_forget,
)

PREFIX = "enc1:"


class ContentUnreadable(Exception):
    """A stored value is not a token this code wrote, or does not decrypt under its key."""


def _context(purpose: str, key_id: int) -> bytes:
    return f"{purpose}:{key_id}".encode()


def text_seal(*, text: str, purpose: str) -> str:
    """Encrypt `text` under the current data key."""
    key = data_key_current()
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = key.cipher.encrypt(nonce, text.encode(), _context(purpose, key.id))
    return f"{PREFIX}{key.id}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"


def token_key_id(token: str) -> int | None:
    """The data key a token was sealed under; None when `token` is not one (plain text)."""
    if not token.startswith(PREFIX):
        return None
    key_id, separator, _ = token[len(PREFIX) :].partition(":")
    return int(key_id) if separator and key_id.isdigit() else None


def text_open(*, token: str, purpose: str) -> str:
    """Decrypt a token; ContentUnreadable (or DataKeyUnavailable) says why it cannot be."""
    key_id = token_key_id(token)
    if key_id is None:
        raise ContentUnreadable(f"a stored {purpose} value is not encrypted (written around Gatehouse?).")
    try:
        raw = base64.urlsafe_b64decode(token.rsplit(":", 1)[1])
    except (binascii.Error, ValueError):
        raise ContentUnreadable(f"a stored {purpose} value is damaged (not base64).") from None
    nonce, sealed, context = raw[:NONCE_BYTES], raw[NONCE_BYTES:], _context(purpose, key_id)
    try:
        return data_key_cipher(key_id=key_id).decrypt(nonce, sealed, context).decode()
    except InvalidTag:
        # The key this process remembers under that id may be stale: look it up once more.
        data_key_forget(key_id=key_id)
    try:
        return data_key_cipher(key_id=key_id).decrypt(nonce, sealed, context).decode()
    except (InvalidTag, UnicodeDecodeError):
        raise ContentUnreadable(
            f"a stored {purpose} value does not decrypt under data key {key_id}."
        ) from None


__all__ = ["PREFIX", "ContentUnreadable", "DataKeyUnavailable", "text_open", "text_seal", "token_key_id"]
