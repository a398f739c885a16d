"""The circuit breaker: one process's opening reaches every process (through Redis, where there
is one), its transitions are counted and audited, and Redis out of reach never holds a call up."""

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.test import override_settings

from audit.models import AuditEvent
from gatehouse.metrics import UPSTREAM_BREAKER_TRANSITIONS, UPSTREAM_CIRCUIT_OPEN
from inference.engines import circuit_breaker
from inference.engines.circuit_breaker import CircuitBreaker
from tests.fake_openai import clock_advance
from tests.waiting import eventually

_ASK_ANOTHER_PROCESS = """
import django, sys
django.setup()
from inference.engines.circuit_breaker import CircuitBreaker
print(CircuitBreaker(threshold=1, reset_seconds=30, upstream=sys.argv[1]).allow())
"""


@pytest.fixture
def upstream() -> Iterator[str]:
    """An upstream of the test's own (its shared key is the test's own too)."""
    name = f"http://upstream-{uuid.uuid4().hex[:8]}.test/v1"
    yield name
    CircuitBreaker(upstream=name)._shared_clear()


def _allowed_in_another_process(upstream: str) -> bool:
    answer = subprocess.run(
        [sys.executable, "-c", _ASK_ANOTHER_PROCESS, upstream],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "gatehouse.settings"},
        check=True,
    )
    return answer.stdout.strip().splitlines()[-1] == "True"


def test_an_opening_reaches_another_process_and_a_closing_clears_it(upstream: str) -> None:
    breaker = CircuitBreaker(threshold=2, reset_seconds=30, upstream=upstream)
    breaker.failed()
    assert _allowed_in_another_process(upstream)  # one failure is no opening
    breaker.failed()
    assert not breaker.allow()
    # With Redis (production) every process skips it at once; the embedded default has one process.
    assert _allowed_in_another_process(upstream) is (not settings.REDIS_URL)
    breaker.opened_at = time.monotonic() - 30  # the pause is over: one trial, which succeeds
    assert breaker.allow()
    breaker.succeeded()
    assert _allowed_in_another_process(upstream)


def test_a_closed_breaker_reads_the_shared_state_at_most_once_a_second(
    upstream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not settings.REDIS_URL:
        assert CircuitBreaker(upstream=upstream)._key() is None  # nothing shared without Redis
        return
    reads: list[str] = []
    client = circuit_breaker._redis()
    real_pttl = client.pttl
    monkeypatch.setattr(client, "pttl", lambda key: reads.append(key) or real_pttl(key))
    breaker = CircuitBreaker(upstream=upstream)
    for _ in range(50):
        assert breaker.allow()
    assert len(reads) == 1
    # Another process opens it: this one pauses for what is left of the opening.
    CircuitBreaker(threshold=1, reset_seconds=30, upstream=upstream).failed()
    clock_advance(monkeypatch, seconds=circuit_breaker.SHARED_READ_SECONDS)
    assert not breaker.allow()
    assert breaker.opened_at is not None
    clock_advance(monkeypatch, seconds=30)
    assert breaker.allow()  # its own pause over: a trial


@pytest.mark.django_db(transaction=True)
async def test_transitions_are_counted_and_audited(upstream: str) -> None:
    opened = UPSTREAM_BREAKER_TRANSITIONS.labels(upstream=upstream, state="open")
    before = opened._value.get()
    breaker = CircuitBreaker(threshold=1, reset_seconds=30, upstream=upstream)
    breaker.failed()
    breaker.failed()  # already open: no second transition
    assert opened._value.get() == before + 1
    assert UPSTREAM_CIRCUIT_OPEN.labels(upstream=upstream)._value.get() == 1
    breaker.succeeded()
    assert UPSTREAM_BREAKER_TRANSITIONS.labels(upstream=upstream, state="closed")._value.get() >= 1
    assert UPSTREAM_CIRCUIT_OPEN.labels(upstream=upstream)._value.get() == 0

    def recorded() -> list[str] | None:
        actions = list(
            AuditEvent.objects.filter(target_id=upstream).order_by("id").values_list("action", flat=True)
        )
        return actions if len(actions) == 2 else None

    assert await eventually(recorded) == ["upstream.breaker_opened", "upstream.breaker_closed"]


def test_redis_out_of_reach_never_holds_a_call_up(upstream: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(circuit_breaker, "_client", None)
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        breaker = CircuitBreaker(threshold=1, reset_seconds=30, upstream=upstream)
        assert breaker.allow()  # the shared state cannot be read: the call goes ahead
        breaker.failed()
        assert not breaker.allow()  # what this process knows still holds
    monkeypatch.setattr(circuit_breaker, "_client", None)
