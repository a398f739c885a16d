"""The usage buffer loses nothing: a failed bulk write keeps its rows for the next flush, and
with Redis away a record is written directly."""

import pytest

from accounts.models import UsageRecord, User
from accounts.services import usage
from accounts.services.usage import usage_record_enqueue, usage_records_flush
from tests.e2e.server import free_port
from tests.profile import PRODUCTION

pytestmark = pytest.mark.django_db(transaction=True)


def _enqueue(user: User, n: int) -> None:
    for index in range(n):
        usage_record_enqueue(
            user_id=user.pk,
            api_key_id=None,
            model_version_id=None,
            channel="api",
            prompt_tokens=index,
            completion_tokens=1,
            latency_ms=1.0,
            time_to_first_token_ms=0.5,
            outcome="completed",
            request_id=f"r{index}",
        )


def test_a_failed_write_keeps_its_rows_in_order_for_the_next_flush(
    bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    _enqueue(bob, 5)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database away")

    with monkeypatch.context() as patched:
        patched.setattr(UsageRecord.objects, "bulk_create", broken)
        with pytest.raises(RuntimeError):
            usage_records_flush(batch=3)
    assert UsageRecord.objects.count() == 0
    assert usage_records_flush(batch=3) == 5
    assert list(UsageRecord.objects.order_by("id").values_list("request_id", flat=True)) == [
        f"r{i}" for i in range(5)
    ]
    assert usage_records_flush() == 0


@pytest.mark.skipif(not PRODUCTION, reason="the buffer is a Redis list in the production profile")
def test_with_redis_unreachable_a_record_goes_straight_to_the_database(
    bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    with monkeypatch.context() as patched:
        patched.setattr(usage, "_redis", lambda: dead)
        _enqueue(bob, 2)
    assert list(UsageRecord.objects.order_by("id").values_list("request_id", flat=True)) == ["r0", "r1"]


def test_a_row_that_can_never_be_written_is_dropped_and_the_others_are_written(
    bob: User, caplog: pytest.LogCaptureFixture
) -> None:
    _enqueue(bob, 2)
    usage_record_enqueue(
        user_id=bob.pk,
        api_key_id=None,
        model_version_id=None,
        channel="api",
        prompt_tokens=-5,
        completion_tokens=1,
        latency_ms=1.0,
        time_to_first_token_ms=None,
        outcome="completed",
        request_id="unwritable",
    )
    usage_record_enqueue(
        user_id=bob.pk,
        api_key_id=None,
        model_version_id=None,
        channel="api",
        prompt_tokens=1,
        completion_tokens=1,
        latency_ms=1.0,
        time_to_first_token_ms=None,
        outcome="completed",
        request_id="after",
    )
    assert usage_records_flush() == 3
    assert list(UsageRecord.objects.order_by("id").values_list("request_id", flat=True)) == [
        "r0",
        "r1",
        "after",
    ]
    assert "usage record dropped" in caplog.text
    assert "unwritable" in caplog.text
    assert usage_records_flush() == 0  # not queued again
