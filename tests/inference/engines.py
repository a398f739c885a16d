"""Demo engines of a test's own, with the batching it is about."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from inference.demo_model import DEMO_CONTEXT_LENGTH
from inference.engines.local import LocalTransformersEngine
from inference.manifest import manifest_compute


@contextmanager
def demo_engine(directory: Path, *, batching: str, **settings: Any) -> Iterator[LocalTransformersEngine]:
    """A demo engine of its own with `batching` (checked to be what it runs), closed after."""
    engine = LocalTransformersEngine(
        directory=directory,
        manifest=manifest_compute(directory=directory),
        context_length=DEMO_CONTEXT_LENGTH,
        batching=batching,
        **settings,
    )
    assert engine.batching == batching
    try:
        yield engine
    finally:
        engine.close()
