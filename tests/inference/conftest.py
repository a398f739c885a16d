"""A loaded demo engine, shared by the engine tests (loading it once keeps them quick)."""

from pathlib import Path

import pytest

from inference.demo_model import DEMO_CONTEXT_LENGTH, demo_model_build
from inference.engines.local import LocalTransformersEngine
from inference.manifest import manifest_compute


@pytest.fixture(scope="session")
def demo_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("engine") / "demo"
    demo_model_build(directory=directory)
    return directory


@pytest.fixture(scope="session")
def engine(demo_directory: Path) -> LocalTransformersEngine:
    return LocalTransformersEngine(
        directory=demo_directory,
        manifest=manifest_compute(directory=demo_directory),
        context_length=DEMO_CONTEXT_LENGTH,
    )
