"""A loaded demo engine, shared by the engine tests (loading it once keeps them quick), and a
fake OpenAI-compatible upstream of each test's own."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from inference.demo_model import DEMO_CONTEXT_LENGTH, demo_model_build
from inference.engines.local import LocalTransformersEngine
from inference.manifest import manifest_compute
from tests.fake_openai import FakeUpstream, fake_upstream


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


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as server:
        yield server


@pytest.fixture
def second() -> Iterator[FakeUpstream]:
    """Another upstream, whose answer says it is the second."""
    with fake_upstream() as server:
        server.words = ["from ", "the ", "second"]
        yield server
