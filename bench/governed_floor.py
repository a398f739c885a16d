"""The governed floor: the floor (bench.floor) plus the round trips that governing a request
cannot skip, and nothing else.

The issue's design asks three things of every governed chat: it is admitted before the
upstream is called (one Redis script takes its slot and reserves its tokens), its record is
durable before its answer ends (one INSERT in its own transaction), and what it held is given
back (one Redis script, at the same time as the INSERT). This floor does exactly those round
trips around the bare floor's relay, with constant keys and a constant row: no key lookup, no
plan, no reading of the request or the answer. Its added latency is the least any gateway
built that way can add on this machine; P1 reports it beside the gateway's.

It writes into a table of its own (`bench_governed_floor`, made at startup and dropped at
shutdown) and under Redis keys of its own (deleted at shutdown).

    FLOOR_UPSTREAM=http://127.0.0.1:9000 FLOOR_TOKEN=secret \
    FLOOR_DATABASE_URL=postgres://postgres@127.0.0.1:5432/gatehouse \
    FLOOR_REDIS_URL=redis://127.0.0.1:6379/15 \
        python -m uvicorn bench.governed_floor:app --port 9002 --lifespan on
"""

import asyncio
import os
import uuid
from typing import Any

import psycopg
import redis.asyncio

from bench.floor import Around, floor_app

TABLE = "bench_governed_floor"
KEYS = ("bench:governed-floor:slots", "bench:governed-floor:tokens")
# Take a slot and reserve the answer's tokens; give the slot back and charge what was used.
ADMIT = """
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], 60)
return redis.call('INCRBY', KEYS[2], ARGV[1])
"""
SETTLE = """
redis.call('DECR', KEYS[1])
return redis.call('INCRBY', KEYS[2], ARGV[1])
"""
RESERVED_TOKENS = USED_TOKENS = 16
RECORD = '{"finish_reason": "length", "prompt_tokens": 8, "completion_tokens": 16}'


class RoundTrips(Around):
    """The round trips (see the module) on one PostgreSQL connection and one Redis client."""

    def __init__(self, *, database_url: str, redis_url: str) -> None:
        self._database_url, self._redis_url = database_url, redis_url
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._redis: Any = None
        self._admit: Any = None
        self._settle: Any = None

    async def start(self) -> None:
        self._connection = await psycopg.AsyncConnection.connect(self._database_url, autocommit=True)
        await self._connection.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, uuid uuid UNIQUE NOT NULL, "
            "occurred_at timestamptz NOT NULL DEFAULT now(), metadata jsonb NOT NULL)"
        )
        self._redis = redis.asyncio.Redis.from_url(self._redis_url)
        self._admit = self._redis.register_script(ADMIT)
        self._settle = self._redis.register_script(SETTLE)

    async def stop(self) -> None:
        if self._connection is not None:
            await self._connection.execute(f"DROP TABLE IF EXISTS {TABLE}")
            await self._connection.close()
        if self._redis is not None:
            await self._redis.delete(*KEYS)
            await self._redis.aclose()

    async def before(self) -> None:
        await self._admit(keys=KEYS, args=[RESERVED_TOKENS])

    async def after(self) -> None:
        assert self._connection is not None  # noqa: S101 - made at startup
        await asyncio.gather(
            self._connection.execute(
                f"INSERT INTO {TABLE} (uuid, metadata) VALUES (%s, %s)",  # noqa: S608 - a constant name
                [uuid.uuid4(), RECORD],
                prepare=True,
            ),
            self._settle(keys=KEYS, args=[USED_TOKENS - RESERVED_TOKENS]),
        )


app = floor_app(
    RoundTrips(
        database_url=os.environ.get("FLOOR_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        redis_url=os.environ.get("FLOOR_REDIS_URL", "redis://127.0.0.1:6379/15"),
    )
)
