"""The version a generation runs comes from the process's cache (`model_version_for_run`): a
worker loads each version once, not once per generation, and reloads it once it changes."""

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from gatehouse.local_cache import local_caches_trusted
from inference.models import ModelVersion
from inference.selectors import model_version_for_run
from tests.profile import PRODUCTION

pytestmark = pytest.mark.django_db(transaction=True)


def _listening() -> None:
    """Wait until this process hears announcements (the first use starts its listener)."""
    deadline = time.monotonic() + 10
    while not local_caches_trusted():
        assert time.monotonic() < deadline, "the caches never started listening for announcements"
        time.sleep(0.02)


@pytest.mark.skipif(not PRODUCTION, reason="kept only where Redis carries the announcements")
def test_a_version_is_loaded_once_then_again_after_it_changes(demo_version: ModelVersion) -> None:
    _listening()
    # An announcement of an earlier write (the fixture's) may still be on its way and drop the
    # first read: then read again. Once none comes between, the second read is the first.
    for _ in range(50):
        first = model_version_for_run(version_id=demo_version.pk)
        with CaptureQueriesContext(connection) as again:
            kept = model_version_for_run(version_id=demo_version.pk) is first
        if kept:
            break
        time.sleep(0.1)
    assert kept, "the version was never kept between two reads"
    assert again.captured_queries == []
    assert first.model.name == demo_version.model.name  # its model came with it

    demo_version.context_length = 4096
    demo_version.save(update_fields=["context_length"])

    with CaptureQueriesContext(connection) as changed:
        reloaded = model_version_for_run(version_id=demo_version.pk)
    assert reloaded.context_length == 4096
    assert len(changed.captured_queries) == 1


def test_an_unknown_version_is_refused_every_time(demo_version: ModelVersion) -> None:
    missing = demo_version.pk + 10_000
    for _ in range(2):  # a miss is not kept
        with pytest.raises(ModelVersion.DoesNotExist):
            model_version_for_run(version_id=missing)
