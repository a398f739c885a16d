"""The hash chain's arithmetic, with no Django in it.

An outsider re-implements or runs exactly this to check an export (see `audit.offline_verify`),
so it needs only the standard library (orjson, where installed, only writes the same bytes
faster) and is the single definition the app, the migration that chained older rows, the
verifier and the export all use.

Each event is encoded canonically as a compact JSON array of the fields in `CHAINED_FIELDS`,
in that order, and its hash is

    sha256( previous hash (64 hex digits, ASCII) + "\\n" + canonical encoding (UTF-8) )

The first event's previous hash is `GENESIS`. Personal details (names, addresses, user agents)
are not chained directly: each event carries keyed digests of them (`actor_digest`,
`target_digest`), and the digests are chained. Erasing a person deletes their key and blanks
their details in place; the chain still verifies because the digests have not changed.

An event is written before it has a place in the chain (see `audit.sealing`): it then carries
a keyed digest of its chained content, every field but the sequence (`PENDING_FIELDS`), so that
a change made before it is sealed is caught when it is sealed. That digest is the server's
business (its key never leaves it); the chain and its exports do not depend on it.
"""

import hashlib
import hmac
import ipaddress
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

orjson: ModuleType | None
try:
    import orjson
except ImportError:  # run as a lone file, by an outsider's verifier
    orjson = None

GENESIS = "0" * 64

# Order matters: it is part of the encoding. Append new fields at the end, never reorder.
CHAINED_FIELDS: tuple[str, ...] = (
    "sequence",
    "uuid",
    "occurred_at",
    "actor_pseudonym",
    "actor_kind",
    "action",
    "target_type",
    "target_id",
    "target_pseudonym",
    "request_id",
    "outcome",
    "actor_digest",
    "target_digest",
    "metadata_json",
)

# What a row's digest covers while it waits to be sealed: everything chained but its position.
PENDING_FIELDS: tuple[str, ...] = CHAINED_FIELDS[1:]

# Fields that name a person. They are covered by the digests, not by the chain, so that
# erasure can blank them without breaking it.
PERSONAL_ACTOR_FIELDS: tuple[str, ...] = ("actor_display", "client_ip", "user_agent")
PERSONAL_TARGET_FIELDS: tuple[str, ...] = ("target_display",)


def timestamp_canonical(moment: datetime) -> str:
    """UTC, microseconds, a trailing Z: the one spelling every database gives back unchanged."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def address_canonical(address: str) -> str:
    """One spelling per client address, for its personal digest: the digest is made from it
    and checked against it, whatever spelling a database gives the address back in
    (PostgreSQL writes `::1.2.3.4` where Python writes `::102:304`).

    An IPv4 client seen through a dual-stack socket (`::ffff:10.1.2.3`) is the IPv4 address it
    is. Text that is no address is left as it is, for its digest to judge.
    """
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    mapped = parsed.ipv4_mapped if isinstance(parsed, ipaddress.IPv6Address) else None
    return str(mapped) if mapped is not None else parsed.compressed


def metadata_canonical(metadata: Mapping[str, Any]) -> str:
    """Sorted keys, no spaces, non-JSON values as strings. Stored as this exact text."""
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


# One encoder, made once: `json.dumps` with options builds a new one per call, which is most
# of the cost of verifying a long chain.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


# The only value types a chained or digested array holds. For them orjson writes exactly the
# bytes of `_ENCODER` (compact, UTF-8, the same escapes: checked over random text with every
# control character in `tests/audit/test_chain_canonical.py`), in about a third of the time.
_ORJSON_TYPES = frozenset({str, int, type(None)})


def event_canonical(values: Sequence[object]) -> bytes:
    """The encoding of one event: its `CHAINED_FIELDS` values as a compact JSON array."""
    if orjson is not None and _ORJSON_TYPES.issuperset(map(type, values)):
        try:
            encoded: bytes = orjson.dumps(values)
            return encoded
        except TypeError:  # what orjson refuses (a lone surrogate, an integer over 64 bits)
            pass
    return _ENCODER.encode(values).encode()


def link_hash(previous: str, canonical: bytes) -> str:
    return hashlib.sha256(previous.encode("ascii") + b"\n" + canonical).hexdigest()


def personal_digest(key: bytes, values: Sequence[str]) -> str:
    """HMAC-SHA256 of personal details under their subject's key.

    Details with no person behind them (the system, an unknown caller) use the empty key, so
    anyone can check them; a person's key lives in the erasable subject table.
    """
    return hmac.new(key, event_canonical(values), hashlib.sha256).hexdigest()


def pending_digest(key: bytes, values: Sequence[object]) -> str:
    """HMAC-SHA256 under `key` of an unsealed event's `PENDING_FIELDS` values, encoded canonically.

    Anyone who can write rows but does not hold the key cannot make one that matches.
    """
    return hmac.digest(key, event_canonical(values), "sha256").hex()


def chain_walk(rows: Sequence[Sequence[object]], *, previous: str = GENESIS) -> tuple[str, int | None]:
    """Recompute hashes over rows of (`CHAINED_FIELDS`..., stored hash) in order.

    Returns the last good hash and the index of the first row whose stored hash differs from
    the recomputed one (None when all match).
    """
    for index, row in enumerate(rows):
        expected = link_hash(previous, event_canonical(row[:-1]))
        if expected != row[-1]:
            return previous, index
        previous = expected
    return previous, None
