"""The key that digests unsealed rows, and checking a row against its digest.

Why a keyed digest (HMAC), not a plain hash: whoever can write the table (the app's database
role, an SQL injection, a database administrator) could recompute a plain hash after editing a
row and the sealer would chain the edit. The key is derived from Django's SECRET_KEY, which
every web and worker process already shares and which never reaches the database, so such a
writer cannot make a digest the sealer accepts. It is derived the way Django's `salted_hmac`
derives its keys (SHA-256 of a purpose-specific salt and the secret), so it is no reuse of the
secret itself, and rotation works as it does for sessions: keep the old secret in
SECRET_KEY_FALLBACKS until every row written under it is sealed (a second or so; a rolling
deploy's length to be safe). A row whose digest matches no key is refused as tampered.

The digest only guards a row until it is sealed; from then on the chain and the signed
checkpoints do, and a later rotation cannot break anything.
"""

import hashlib
import hmac
from collections.abc import Sequence
from functools import lru_cache

from django.conf import settings
from django.utils.encoding import force_bytes

from audit import chain

_SALT = b"gatehouse.audit.row_digest"


@lru_cache(maxsize=8)
def _derived(secret: str | bytes) -> bytes:
    return hashlib.sha256(_SALT + force_bytes(secret)).digest()


def audit_row_keys() -> list[bytes]:
    """The current key first, then one per SECRET_KEY_FALLBACKS entry."""
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return [_derived(secret) for secret in secrets]


def audit_row_digest(values: Sequence[object]) -> str:
    """The digest a new row carries: `values` in `chain.PENDING_FIELDS` order, spelled as hashed."""
    return chain.pending_digest(_derived(settings.SECRET_KEY), values)


def audit_row_digest_matches(values: Sequence[object], digest: str, *, keys: Sequence[bytes]) -> bool:
    """Whether `digest` is the digest of `values` under one of `keys` (constant-time compare)."""
    canonical = chain.event_canonical(values)
    return any(hmac.compare_digest(hmac.digest(key, canonical, "sha256").hex(), digest or "") for key in keys)
