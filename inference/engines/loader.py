"""Loaded engines, one per model version per process: an LRU cache under a memory budget.

A version's size is estimated from its weight files before loading (weights dominate
memory), so the least recently used engines are evicted first and a load never overshoots
the budget. Celery workers warm the models they serve at start-up (GATEHOUSE_WARM_MODELS).
"""

import hashlib
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache

from gatehouse.heap import model_libraries_freeze
from inference.engines.base import ChatMessage, Engine, GenerationParams
from inference.engines.circuit_breaker import circuit_breaker_for
from inference.engines.embedding import LocalEmbeddingEngine
from inference.engines.local import LocalTransformersEngine
from inference.engines.remote import OpenAICompatibleEngine
from inference.engines.remote_deployments import RemoteDeployments, Upstream
from inference.models import Deployment, Model, ModelVersion
from inference.upstream_credentials import UpstreamCredentialRefused, upstream_credential_read

logger = logging.getLogger(__name__)

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_engines: "OrderedDict[tuple[int, str, tuple[tuple[object, ...], ...]], tuple[Engine | LocalEmbeddingEngine, int]]" = OrderedDict()
_lock = threading.Lock()


class EngineTooLarge(Exception):
    """One model alone does not fit the memory budget."""


class UpstreamRefused(Exception):
    """A remote version's stored registration breaks the upstream rules; it is not loaded."""


def _manifest_key(manifest: dict[str, str]) -> str:
    return ",".join(f"{name}={digest}" for name, digest in sorted(manifest.items()))


def weights_bytes(*, directory: Path, manifest: dict[str, str]) -> int:
    return sum(
        (directory / name).stat().st_size
        for name in manifest
        if name.endswith(_WEIGHT_SUFFIXES) and (directory / name).is_file()
    )


def _evict_for(needed: int, budget: int) -> None:
    while _engines and sum(size for _, size in _engines.values()) + needed > budget:
        key, (engine, size) = _engines.popitem(last=False)
        logger.info(
            "evicting engine for version %s (%d bytes) to stay within the memory budget", key[0], size
        )
        _engine_close(engine)
        del engine
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def _engine_close(engine: Engine | LocalEmbeddingEngine) -> None:
    # Local engines own batch threads; remote ones their pooled HTTP connections.
    close = getattr(engine, "close", None)
    if close is not None:
        close()


def engine_for_version(*, version: ModelVersion) -> Engine | LocalEmbeddingEngine:
    """The engine serving `version`, loading it (manifest verified first) if needed.

    Keyed by the manifest too, so re-registered files are never served from a stale load.
    """
    key = (version.pk, _manifest_key(version.manifest), _deployments_key(version))
    with _lock:
        cached = _engines.get(key)
        if cached is not None:
            _engines.move_to_end(key)
            return cached[0]
        if version.backend == ModelVersion.Backend.OPENAI_COMPATIBLE:
            remote = _remote_engine(version)
            for stale in [cached_key for cached_key in _engines if cached_key[0] == version.pk]:
                _engine_close(_engines.pop(stale)[0])  # built from deployments since changed
            _engines[key] = (remote, 0)  # nothing loaded here: no memory to budget
            return remote
        budget = settings.GATEHOUSE_ENGINE_MEMORY_BUDGET_MB * 1024 * 1024
        size = weights_bytes(directory=version.source_path, manifest=version.manifest)
        if size > budget:
            raise EngineTooLarge(
                f"{version} needs about {size // 2**20} MiB, over the {budget // 2**20} MiB budget"
            )
        _evict_for(size, budget)
        model_libraries_freeze()
        engine: Engine | LocalEmbeddingEngine
        if version.model.kind == Model.Kind.EMBEDDING:
            engine = _embedding_engine(version)
        else:
            engine = _generation_engine(version)
        _engines[key] = (engine, size)
        if engine.max_bytes_per_token is not None:
            _bytes_per_token_publish(version, engine.max_bytes_per_token)
        return engine


def _local_settings(version: ModelVersion) -> dict[str, Any]:
    """What every local engine of `version` is built with: its files and this server's device."""
    return {
        "directory": version.source_path,
        "manifest": version.manifest,
        "context_length": version.context_length,
        "device": settings.GATEHOUSE_DEVICE,
        "dtype": version.dtype,
        "allow_pickle_weights": version.allow_pickle_weights,
        "cpu_threads": settings.GATEHOUSE_ENGINE_CPU_THREADS,
        "max_batch_size": settings.GATEHOUSE_ENGINE_MAX_BATCH_SIZE,
    }


def _generation_engine(version: ModelVersion) -> LocalTransformersEngine:
    return LocalTransformersEngine(
        **_local_settings(version),
        batching=settings.GATEHOUSE_ENGINE_BATCHING,
        max_concurrent_batches=settings.GATEHOUSE_ENGINE_CONCURRENT_BATCHES,
        batch_gather_seconds=settings.GATEHOUSE_ENGINE_BATCH_GATHER_MS / 1000,
        batch_overflow_after_seconds=settings.GATEHOUSE_ENGINE_BATCH_OVERFLOW_MS / 1000,
    )


# What each version's tokenizer says about its tokens, learned where it loaded (a worker) and
# shared through the cache with the web processes that admit requests. Fixed for a manifest.
_bytes_per_token: dict[str, int] = {}


def _bytes_per_token_key(version: ModelVersion) -> str:
    digest = hashlib.sha256(_manifest_key(version.manifest).encode()).hexdigest()[:32]
    return f"inference:max-bytes-per-token:{version.pk}:{digest}"


def _bytes_per_token_publish(version: ModelVersion, value: int) -> None:
    _bytes_per_token[_bytes_per_token_key(version)] = value
    try:
        cache.set(_bytes_per_token_key(version), value, timeout=None)
    except Exception:  # noqa: BLE001 - a cache away: admission keeps the constant, nothing fails
        logger.warning("version %s: could not share its tokens' size through the cache", version.pk)


def version_max_bytes_per_token(*, version: ModelVersion) -> int:
    """The most bytes one token of `version` stands for, as far as this process can tell.

    A local version's tokenizer says so once it has loaded somewhere; until then, and for
    remote versions (their tokenizer is not ours to read), GATEHOUSE_MAX_BYTES_PER_TOKEN.
    """
    if version.backend == ModelVersion.Backend.OPENAI_COMPATIBLE:
        return int(settings.GATEHOUSE_MAX_BYTES_PER_TOKEN)
    key = _bytes_per_token_key(version)
    known = _bytes_per_token.get(key)
    if known is None:
        try:
            learned = cache.get(key)
        except Exception:  # noqa: BLE001 - a cache away: the constant is the safe answer
            learned = None
        if not isinstance(learned, int) or learned < 1:
            return int(settings.GATEHOUSE_MAX_BYTES_PER_TOKEN)
        known = _bytes_per_token[key] = learned
    return known


def _embedding_engine(version: ModelVersion) -> LocalEmbeddingEngine:
    return LocalEmbeddingEngine(**_local_settings(version))


def _remote_engine(version: ModelVersion) -> RemoteDeployments:
    """The version's deployments, each an engine with its own circuit breaker (a version
    registered before deployments, or written by hand without any, is its own one upstream)."""
    upstreams = [
        Upstream(
            engine=_upstream_engine(
                base_url=deployment.base_url,
                remote_model=deployment.remote_model,
                credential_ref=deployment.credential_ref,
            ),
            weight=deployment.weight,
            max_concurrency=deployment.max_concurrency,
            tokens_per_minute=deployment.tokens_per_minute,
        )
        for deployment in _deployments(version)
    ] or [
        Upstream(
            engine=_upstream_engine(
                base_url=version.remote_base_url,
                remote_model=version.remote_model,
                credential_ref=version.credential_ref,
            )
        )
    ]
    # The version's model is read with it (selectors: a related manager, or select_related).
    return RemoteDeployments(upstreams, routing=version.model.routing)


def _deployments(version: ModelVersion) -> list[Deployment]:
    # Routing reads them with the version (selectors prefetch them): no query on an event loop.
    return list(version.deployments.all())


def _deployments_key(version: ModelVersion) -> tuple[tuple[object, ...], ...]:
    """What the version's engine is built from: a deployment added makes a new one."""
    if version.backend != ModelVersion.Backend.OPENAI_COMPATIBLE:
        return ()
    return (
        (version.model.routing,),
        *(
            (
                deployment.pk,
                deployment.base_url,
                deployment.remote_model,
                deployment.credential_ref,
                deployment.weight,
                deployment.max_concurrency,
                deployment.tokens_per_minute,
            )
            for deployment in _deployments(version)
        ),
    )


def _upstream_engine(*, base_url: str, remote_model: str, credential_ref: str) -> OpenAICompatibleEngine:
    # The deployment names where its key lives (a GATEHOUSE_UPSTREAM_* environment variable);
    # the key is never stored. The name is checked again here: a row that breaks the rule
    # (written before it, or by hand) never gets any other variable of this process read, let
    # alone sent. The address is checked before every call.
    try:
        api_key = upstream_credential_read(name=credential_ref) if credential_ref else None
    except UpstreamCredentialRefused as refused:
        raise UpstreamRefused(str(refused)) from None
    return OpenAICompatibleEngine(
        base_url=base_url,
        model=remote_model,
        api_key=api_key,
        connect_timeout=settings.GATEHOUSE_REMOTE_CONNECT_TIMEOUT,
        read_timeout=settings.GATEHOUSE_REMOTE_READ_TIMEOUT,
        max_retries=settings.GATEHOUSE_REMOTE_MAX_RETRIES,
        breaker=circuit_breaker_for(
            base_url=base_url,
            threshold=settings.GATEHOUSE_REMOTE_BREAKER_THRESHOLD,
            reset_seconds=settings.GATEHOUSE_REMOTE_BREAKER_RESET_SECONDS,
        ),
    )


def engines_loaded() -> list[int]:
    """Version ids with a loaded engine, least recently used first."""
    with _lock:
        return [key[0] for key in _engines]


def engines_clear() -> None:
    """Forget every loaded engine (tests; a future admin 'unload' action)."""
    with _lock:
        for engine, _ in _engines.values():
            _engine_close(engine)
        _engines.clear()


def engines_warm_up(*, model_names: list[str]) -> list[str]:
    """Load and exercise the production version of each named model; returns what warmed."""
    warmed = []
    for name in model_names:
        version = ModelVersion.objects.filter(model__name=name, status=ModelVersion.Status.PRODUCTION).first()
        if version is None:
            logger.warning("warm-up: model %r has no production version", name)
            continue
        engine = engine_for_version(version=version)
        if isinstance(engine, LocalEmbeddingEngine):
            engine.embed(["warm-up"])
            warmed.append(str(version))
            continue
        # One token through the whole path: first-request latency no longer pays for lazy init.
        engine.generate_stream(
            messages=[ChatMessage(role="user", content="warm-up")],
            params=GenerationParams(max_tokens=1, temperature=0.0),
            on_token=lambda *_: None,
            should_stop=lambda: False,
        )
        warmed.append(str(version))
    return warmed
