"""What /metrics says about the data keys, read from the database at scrape time: the current
key's age against its maximum, and the retired keys that wait for the re-encryption, followed
as keys are started, rotated, retired and deleted."""

from datetime import timedelta
from typing import Any

import pytest
from django.db import DatabaseError
from django.utils import timezone
from prometheus_client import generate_latest

from accounts.models import User
from encryption import selectors
from encryption.data_keys import data_key_current, data_keys_forget
from encryption.models import DataKey
from encryption.services import data_key_rotate, encryption_maintain
from gatehouse.metrics_export import metrics_registry
from inference.models import Conversation, Message, ModelVersion
from tests.encryption.helpers import master_key_entry
from tests.prometheus_text import Samples, metric_samples

pytestmark = pytest.mark.django_db

CREATED = "gatehouse_encryption_data_key_created_timestamp_seconds"
MAX_AGE = "gatehouse_encryption_data_key_max_age_seconds"
RETIRED = "gatehouse_encryption_retired_data_keys"
OLDEST_RETIRED = "gatehouse_encryption_oldest_retired_timestamp_seconds"


def _scrape() -> Samples:
    return metric_samples(generate_latest(metrics_registry()).decode())


def _keys(samples: Samples) -> dict[str, float | None]:
    """The four figures, None for one that is absent."""
    return {name: samples.get((name, frozenset())) for name in (CREATED, MAX_AGE, RETIRED, OLDEST_RETIRED)}


def _created(key_id: int) -> float:
    return DataKey.objects.get(pk=key_id).created_at.timestamp()


def _retired(key_id: int) -> float:
    retired_at = DataKey.objects.get(pk=key_id).retired_at
    assert retired_at is not None
    return retired_at.timestamp()


def _write(bob: User, version: ModelVersion, text: str) -> None:
    conversation = Conversation.objects.create(owner=bob, model=version.model, title=text)
    Message.objects.create(conversation=conversation, role="user", content=text)


def test_before_any_data_key_only_the_maximum_age_and_no_retired_key(
    master_key_a: str, settings: Any
) -> None:
    assert _keys(_scrape()) == {CREATED: None, MAX_AGE: 90 * 86400, RETIRED: 0, OLDEST_RETIRED: None}
    settings.GATEHOUSE_ENCRYPTION_DATA_KEY_DAYS = 30
    assert _keys(_scrape())[MAX_AGE] == 30 * 86400


def test_the_current_key_and_the_retired_ones_follow_each_rotation(master_key_a: str) -> None:
    first = data_key_current().id
    assert _keys(_scrape()) == {
        CREATED: _created(first),
        MAX_AGE: 90 * 86400,
        RETIRED: 0,
        OLDEST_RETIRED: None,
    }

    second = data_key_rotate().pk
    assert _keys(_scrape()) == {
        CREATED: _created(second),
        MAX_AGE: 90 * 86400,
        RETIRED: 1,
        OLDEST_RETIRED: _retired(first),
    }
    third = data_key_rotate().pk
    # The oldest retirement is the first key's, an hour before the second's.
    DataKey.objects.filter(pk=first).update(retired_at=timezone.now() - timedelta(hours=1))
    samples = _keys(_scrape())
    assert (samples[CREATED], samples[RETIRED], samples[OLDEST_RETIRED]) == (
        _created(third),
        2,
        _retired(first),
    )
    assert _retired(first) < _retired(second)


def test_the_current_key_is_the_one_not_retired_even_where_a_newer_one_was(master_key_a: str) -> None:
    """Two processes may start a key at once; the maintenance keeps one, not always the newer."""
    older = data_key_current().id
    newer = data_key_rotate().pk
    DataKey.objects.filter(pk=older).update(retired_at=None)
    DataKey.objects.filter(pk=newer).update(retired_at=timezone.now())
    samples = _keys(_scrape())
    assert (samples[CREATED], samples[RETIRED], samples[OLDEST_RETIRED]) == (
        _created(older),
        1,
        _retired(newer),
    )
    assert _created(older) < _created(newer)


def test_retired_keys_leave_the_figures_once_the_pass_deletes_them(
    master_key_a: str, settings: Any, bob: User, demo_version: ModelVersion
) -> None:
    settings.GATEHOUSE_ENCRYPTION_KEY_CACHE_SECONDS = 60  # a key retired a moment ago is kept
    _write(bob, demo_version, "one")
    old = data_key_current().id
    new = data_key_rotate().pk
    encryption_maintain()
    assert _keys(_scrape())[RETIRED] == 1
    assert _keys(_scrape())[OLDEST_RETIRED] == _retired(old)

    DataKey.objects.filter(pk=old).update(retired_at=timezone.now() - timedelta(minutes=3))
    encryption_maintain()
    assert not DataKey.objects.filter(pk=old).exists()
    assert _keys(_scrape()) == {CREATED: _created(new), MAX_AGE: 90 * 86400, RETIRED: 0, OLDEST_RETIRED: None}


def test_a_key_whose_content_cannot_be_read_stays_retired(
    master_key_a: str, settings: Any, bob: User, demo_version: ModelVersion
) -> None:
    """A master key missing: the pass cannot move what the old key sealed, so the key stays (and,
    past six hours, GatehouseReencryptionStalled fires)."""
    _write(bob, demo_version, "lost")
    old = data_key_current().id
    settings.GATEHOUSE_ENCRYPTION_KEYS = master_key_entry("b")
    data_keys_forget()
    assert encryption_maintain()["unreadable"] == 2
    samples = _keys(_scrape())
    assert (samples[RETIRED], samples[OLDEST_RETIRED]) == (1, _retired(old))
    current = DataKey.objects.get(retired_at__isnull=True)
    assert current.master_key_id == "b"
    assert samples[CREATED] == current.created_at.timestamp()


def test_a_key_past_its_age_is_replaced_by_the_maintenance(master_key_a: str) -> None:
    old = data_key_current().id
    DataKey.objects.filter(pk=old).update(created_at=timezone.now() - timedelta(days=91))
    assert _keys(_scrape())[CREATED] == _created(old)
    assert encryption_maintain()["rotated"] is True
    (new,) = DataKey.objects.values_list("pk", flat=True)  # the old one, sealing nothing, is gone
    assert new != old
    samples = _keys(_scrape())
    assert (samples[CREATED], samples[RETIRED], samples[OLDEST_RETIRED]) == (_created(new), 0, None)
    assert timezone.now().timestamp() - _created(new) < 60


def test_a_database_that_cannot_be_read_leaves_the_key_figures_out(
    master_key_a: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    data_key_current()

    def refused() -> selectors.DataKeyFigures:
        raise DatabaseError("permission denied for table encryption_datakey")

    monkeypatch.setattr(selectors, "encryption_key_figures", refused)
    samples = _scrape()
    assert _keys(samples) == dict.fromkeys((CREATED, MAX_AGE, RETIRED, OLDEST_RETIRED))
    assert ("gatehouse_queue_limit", frozenset()) in samples  # the rest is still served
    assert "could not read the encryption data keys" in caplog.text
