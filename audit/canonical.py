"""Reading rows already spelled as the chain hashes them, in plain SQL, on either database.

Building model instances (or even Django's typed tuples) costs more per row than hashing does;
verification walks the whole trail at 100k events/s and the sealer reads every new row, so both
read through these column lists instead.
"""

_UUID_GROUPS = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))


def _sqlite_dashed(column: str) -> str:
    """SQLite keeps UUIDs as 32 hex digits; the chain spells them with dashes."""
    parts = "||'-'||".join(f"substr({column}, {start}, {length})" for start, length in _UUID_GROUPS)
    return f"CASE WHEN {column} IS NULL THEN '' ELSE {parts} END"


_POSTGRESQL_PENDING = (
    "uuid::text",
    """to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')""",
    "COALESCE(actor_pseudonym::text, '')",
)
# Stored as naive UTC "YYYY-MM-DD HH:MM:SS[.ffffff]", with no fraction when it is zero.
_SQLITE_PENDING = (
    _sqlite_dashed("uuid"),
    "replace(occurred_at, ' ', 'T') || CASE WHEN length(occurred_at) = 19 THEN '.000000Z' ELSE 'Z' END",
    _sqlite_dashed("actor_pseudonym"),
)
_COMMON = ("actor_kind", "action", "target_type", "target_id")
_TAIL = ("request_id", "outcome", "actor_digest", "target_digest", "metadata_json")


def pending_columns(vendor: str) -> str:
    """`audit.chain.PENDING_FIELDS` (all chained but the sequence), comma-separated, spelled."""
    if vendor == "postgresql":
        head, target_pseudonym = _POSTGRESQL_PENDING, "COALESCE(target_pseudonym::text, '')"
    else:
        head, target_pseudonym = _SQLITE_PENDING, _sqlite_dashed("target_pseudonym")
    return ", ".join([*head, *_COMMON, target_pseudonym, *_TAIL])


def chained_columns(vendor: str) -> str:
    """`audit.chain.CHAINED_FIELDS`, comma-separated, spelled as hashed."""
    return f"sequence, {pending_columns(vendor)}"


def personal_columns(vendor: str) -> str:
    """`PERSONAL_ACTOR_FIELDS` then `PERSONAL_TARGET_FIELDS`, as their digests cover them."""
    client_ip = "COALESCE(host(client_ip), '')" if vendor == "postgresql" else "COALESCE(client_ip, '')"
    return f"actor_display, {client_ip}, user_agent, target_display"
