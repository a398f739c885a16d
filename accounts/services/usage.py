"""Usage records, written in bulk off the request's path.

A finished request puts its record in a buffer: a Redis list wherever REDIS_URL is set (it
survives the worker that wrote it), a list in this process otherwise. `usage_records_flush`
moves the buffer into the database in one bulk insert; Celery beat runs it in production,
and a flusher thread does on the embedded default, which has no beat
(every GATEHOUSE_USAGE_FLUSH_SECONDS; 0 leaves flushing to whoever calls it). With Redis
unreachable, a record is written straight to the database instead: slower, not lost.

A batch the database refuses for its contents (a constraint, a bad value) is written row by
row: a row that can never be written is dropped with a logged error, the others are
written. Only a database that is away keeps the rows for the next flush.
"""

import json
import logging
import threading
from collections import deque
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DataError, IntegrityError, close_old_connections, transaction
from django.db.models import Count, Q, Sum
from redis.exceptions import RedisError

from accounts.models import Team, UsageRecord, UsageRollup

logger = logging.getLogger(__name__)

# The buffer in Redis (chat ends file their records here in the same script: chat_quotas).
USAGE_BUFFER_KEY = "gatehouse:usage:pending"
_local: deque[dict[str, Any]] = deque()
_local_lock = threading.Lock()
_flusher: threading.Thread | None = None
# What a row's contents can make the insert raise: retrying such a row would fail forever.
_UNWRITABLE = (IntegrityError, DataError, ValidationError, ValueError, TypeError, KeyError)


@cache
def _redis() -> Any:
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def usage_record_enqueue(**fields: Any) -> None:
    """Buffer one usage record; `fields` are `usage_row`'s."""
    usage_row_enqueue(row=usage_row(**fields))


def usage_row(
    *,
    user_id: int,
    api_key_id: int | None,
    model_version_id: int | None,
    channel: str,
    prompt_tokens: int,
    completion_tokens: int,
    latency_ms: float | None,
    time_to_first_token_ms: float | None,
    outcome: str,
    request_id: str,
    cost: Decimal = Decimal(0),
) -> dict[str, Any]:
    """One usage record as the buffer holds it (JSON-safe: the cost as decimal text), stamped now."""
    return {
        "created_at": datetime.now(tz=UTC).isoformat(),
        "user_id": user_id,
        "api_key_id": api_key_id,
        "model_version_id": model_version_id,
        "channel": channel,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cost": str(cost),
        "latency_ms": latency_ms,
        "time_to_first_token_ms": time_to_first_token_ms,
        "outcome": outcome,
        "request_id": request_id[:64],
    }


def usage_row_enqueue(*, row: dict[str, Any]) -> None:
    """Put `row` (`usage_row`) in the buffer the flush empties into the database."""
    if settings.REDIS_URL:
        try:
            _redis().rpush(USAGE_BUFFER_KEY, json.dumps(row))
        except RedisError as error:
            logger.warning("usage buffer unreachable (%s): writing the record directly", error)
            _write([row])
        return
    with _local_lock:
        _local.append(row)
    if settings.GATEHOUSE_USAGE_FLUSH_SECONDS > 0:
        _flusher_ensure()


def _take(limit: int) -> list[dict[str, Any]]:
    if settings.REDIS_URL:
        pipe = _redis().pipeline(transaction=True)
        pipe.lrange(USAGE_BUFFER_KEY, 0, limit - 1)
        pipe.ltrim(USAGE_BUFFER_KEY, limit, -1)
        raw, _ = pipe.execute()
        return [row for item in raw if (row := _parsed(item)) is not None]
    with _local_lock:
        return [_local.popleft() for _ in range(min(limit, len(_local)))]


def _parsed(item: bytes) -> dict[str, Any] | None:
    try:
        row = json.loads(item)
    except ValueError:
        row = None
    if not isinstance(row, dict):
        logger.error("usage record dropped, it is not a record: %r", item[:200])
        return None
    return row


def _put_back(rows: list[dict[str, Any]]) -> None:
    if settings.REDIS_URL:
        _redis().lpush(USAGE_BUFFER_KEY, *[json.dumps(row) for row in reversed(rows)])
        return
    with _local_lock:
        _local.extendleft(reversed(rows))


def usage_records_flush(*, batch: int = 1000) -> int:
    """Move buffered records into the database, `batch` at a time; returns how many were written."""
    written = 0
    while rows := _take(batch):
        try:
            with transaction.atomic():
                _write(rows)
        except _UNWRITABLE:
            written += _write_each(rows)
            continue
        except Exception:
            _put_back(rows)  # tried again at the next flush
            raise
        written += len(rows)
    return written


def _write_each(rows: list[dict[str, Any]]) -> int:
    """Write `rows` one at a time, dropping (and logging) those that can never be written."""
    written = 0
    for index, row in enumerate(rows):
        try:
            with transaction.atomic():
                _write([row])
        except _UNWRITABLE as error:
            logger.error("usage record dropped, it can never be written (%s): %r", error, row)
            continue
        except Exception:
            _put_back(rows[index:])  # the database is away: the rest waits for the next flush
            raise
        written += 1
    return written


def _write(rows: list[dict[str, Any]]) -> None:
    # Teams are looked up here, once per batch, not on each request's path.
    teams = _teams_of({row["user_id"] for row in rows})
    UsageRecord.objects.bulk_create(
        UsageRecord(
            **{
                **row,
                "created_at": datetime.fromisoformat(row["created_at"]),
                "cost": Decimal(row.get("cost") or 0),
            },
            team_ids=teams.get(row["user_id"], []),
        )
        for row in rows
    )


def _teams_of(user_ids: set[int]) -> dict[int, list[int]]:
    """Each user's team ids, in one query."""
    teams: dict[int, list[int]] = {}
    for team_id, user_id in Team.objects.filter(group__user__id__in=user_ids).values_list(
        "id", "group__user__id"
    ):
        teams.setdefault(user_id, []).append(team_id)
    return teams


def _flusher_ensure() -> None:
    """Start this process's flusher thread once (embedded default: no Celery beat here)."""
    global _flusher  # noqa: PLW0603 - one flusher per process
    with _local_lock:
        if _flusher is not None and _flusher.is_alive():
            return
        _flusher = threading.Thread(target=_flush_forever, name="gatehouse-usage-flush", daemon=True)
        _flusher.start()


def _flush_forever() -> None:
    stop = threading.Event()
    while not stop.wait(settings.GATEHOUSE_USAGE_FLUSH_SECONDS):
        try:
            usage_records_flush()
        except Exception:
            logger.exception("usage records could not be written; kept for the next try")
        finally:
            close_old_connections()


def usage_buffer_clear() -> None:
    """Drop what waits to be written (tests start from an empty buffer)."""
    if settings.REDIS_URL:
        _redis().delete(USAGE_BUFFER_KEY)
    with _local_lock:
        _local.clear()


def _period_start(moment: datetime, period: str) -> datetime:
    hour = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return hour if period == UsageRollup.Period.HOUR else hour.replace(hour=0)


@transaction.atomic
def usage_rollup(*, period: str, now: datetime | None = None, periods_back: int = 2) -> int:
    """Recompute the rollups of the current and the last `periods_back` periods from records.

    Recomputing (not adding) makes it idempotent: a rerun, or a record flushed late into a
    period already rolled up, gives the same totals. Returns how many rollup rows it wrote.
    """
    now = now or datetime.now(tz=UTC)
    step = timedelta(hours=1) if period == UsageRollup.Period.HOUR else timedelta(days=1)
    first = _period_start(now, period) - periods_back * step
    written = 0
    start = first
    while start <= now:
        end = start + step
        groups = (
            UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end)
            .values("user_id", "model_version_id", "channel")
            .annotate(
                requests=Count("id"),
                failures=Count("id", filter=Q(outcome=UsageRecord.Outcome.FAILED)),
                prompt_tokens=Sum("prompt_tokens"),
                completion_tokens=Sum("completion_tokens"),
                cost=Sum("cost"),
            )
        )
        UsageRollup.objects.filter(period=period, period_start=start).delete()
        rows = [UsageRollup(period=period, period_start=start, **group) for group in groups]
        UsageRollup.objects.bulk_create(rows)
        written += len(rows)
        start = end
    return written


def usage_totals(*, user_id: int, since: datetime) -> dict[str, int]:
    """The user's requests and tokens since `since` (a day boundary), from the daily rollups."""
    totals = UsageRollup.objects.filter(
        user_id=user_id, period=UsageRollup.Period.DAY, period_start__gte=since
    ).aggregate(
        requests=Sum("requests"),
        failures=Sum("failures"),
        prompt_tokens=Sum("prompt_tokens"),
        completion_tokens=Sum("completion_tokens"),
    )
    return {name: int(value or 0) for name, value in totals.items()}
