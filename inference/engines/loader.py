"""Loaded engines, one per model version per process, loaded on first use."""

import threading

from django.conf import settings

from inference.engines.base import Engine
from inference.engines.local import LocalTransformersEngine
from inference.models import ModelVersion

_engines: dict[tuple[int, str], Engine] = {}
_lock = threading.Lock()


def _manifest_key(manifest: dict[str, str]) -> str:
    return ",".join(f"{name}={digest}" for name, digest in sorted(manifest.items()))


def engine_for_version(*, version: ModelVersion) -> Engine:
    """The engine serving `version`, loading it (manifest verified first) if needed.

    Keyed by the manifest too, so re-registered files are never served from a stale load.
    """
    key = (version.pk, _manifest_key(version.manifest))
    engine = _engines.get(key)
    if engine is not None:
        return engine
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            if version.backend != ModelVersion.Backend.TRANSFORMERS:
                raise NotImplementedError(f"backend {version.backend!r} is not served yet")
            engine = LocalTransformersEngine(
                directory=version.source_path,
                manifest=version.manifest,
                context_length=version.context_length,
                device=settings.GATEHOUSE_DEVICE,
                dtype=version.dtype,
                allow_pickle_weights=version.allow_pickle_weights,
            )
            _engines[key] = engine
    return engine


def engines_clear() -> None:
    """Forget every loaded engine (tests; a future admin 'unload' action)."""
    with _lock:
        _engines.clear()
