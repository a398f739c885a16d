"""The usage buffer loses nothing: a failed bulk write keeps its rows for the next flush."""

import pytest

from accounts.models import UsageRecord, User
from accounts.services.usage import usage_record_enqueue, usage_records_flush

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
