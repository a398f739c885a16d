"""Loaded engines: an LRU cache under a memory budget, and warm-up at worker start."""

import gc
import weakref
from collections.abc import Iterator

import pytest
from django.test import override_settings

from accounts.models import User
from gatehouse import heap
from inference.engines.loader import (
    EngineTooLarge,
    engine_for_version,
    engines_clear,
    engines_loaded,
    engines_warm_up,
    weights_bytes,
)
from inference.models import ModelVersion
from tests.inference.test_lifecycle import register_second_version


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    engines_clear()
    yield
    engines_clear()


def test_engines_are_reused_and_the_least_recently_used_is_evicted(
    demo_version: ModelVersion, alice: User
) -> None:
    v2 = register_second_version(demo_version.model, actor=alice)
    v3 = register_second_version(demo_version.model, actor=alice, label="v3")
    size = weights_bytes(directory=demo_version.source_path, manifest=demo_version.manifest)
    assert size > 0
    # Room for two models, not three (the budget is in MiB; the demo model is far smaller).
    budget_mb = (2 * size + size // 2) / 2**20
    with override_settings(GATEHOUSE_ENGINE_MEMORY_BUDGET_MB=budget_mb):
        first = engine_for_version(version=demo_version)
        assert engine_for_version(version=demo_version) is first
        engine_for_version(version=v2)
        engine_for_version(version=demo_version)  # v1 is now the most recently used
        engine_for_version(version=v3)
        assert engines_loaded() == [demo_version.pk, v3.pk]


def test_a_model_larger_than_the_budget_is_refused(demo_version: ModelVersion) -> None:
    with (
        override_settings(GATEHOUSE_ENGINE_MEMORY_BUDGET_MB=0),
        pytest.raises(EngineTooLarge, match="budget"),
    ):
        engine_for_version(version=demo_version)
    assert engines_loaded() == []


def test_warm_up_loads_and_exercises_production_versions(demo_version: ModelVersion) -> None:
    assert engines_warm_up(model_names=["demo-tiny", "no-such-model"]) == ["demo-tiny@v1"]
    assert engines_loaded() == [demo_version.pk]


def test_the_model_libraries_are_frozen_before_a_model_is_built_and_an_evicted_model_is_freed(
    demo_version: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in a fresh process: the libraries have not been frozen yet.
    monkeypatch.setattr(heap, "_libraries_frozen", False)
    gc.unfreeze()
    engine = engine_for_version(version=demo_version)
    assert gc.get_freeze_count() > 0
    model = weakref.ref(engine.model)  # type: ignore[attr-defined]
    del engine
    engines_clear()
    # Frozen objects are never collected as cycles: a model frozen with the libraries would
    # stay in memory after its eviction.
    gc.collect()
    assert model() is None
