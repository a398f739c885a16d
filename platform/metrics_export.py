"""`/metrics`: the recorded instruments plus figures read at scrape time.

Scrape-time figures are read, not counted, because they are state other processes own:
generations waiting per model (the broker's queues), the audit chain's lag behind its last
signed checkpoint, data-protection requests (worked by Celery workers), the recorded runs of the
trail's verification (a command, beat's task or the auditor API, wherever it ran), the data keys
of encryption at rest (rotated, and re-encrypted off, by beat's task), and GPU memory where this
process drives a GPU. The queue's bound, the checkpoint and verification intervals and the data
keys' maximum age are exported beside them, so alerts compare with the configured values. Every
web pod reads the same database, so these figures are the same on each (the alerts take their max).
"""

import hmac
import ipaddress
import logging
import os
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import cast

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)


class StateCollector(Collector):
    """Figures read from the database and the broker when Prometheus scrapes."""

    def collect(self) -> Iterator[Metric]:
        yield from _queue_depth()
        yield from _audit_lag()
        yield from _audit_verification()
        yield from _compliance_requests()
        yield from _encryption_keys()


class GpuCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from gpu_memory()


def _queue_depth() -> Iterator[Metric]:
    from inference.dispatch import inference_queue_depth
    from inference.models import Model, ModelVersion

    # The bound past which a model's queue refuses (inference.dispatch): alerts compare with it.
    yield GaugeMetricFamily(
        "gatehouse_queue_limit", "Generations a model's queue holds before it refuses more.",
        value=settings.GATEHOUSE_INFERENCE_MAX_QUEUE,
    )  # fmt: skip
    depth = GaugeMetricFamily(
        "gatehouse_queue_depth", "Generations waiting for a worker, by model.", labels=["model"]
    )
    try:
        # A remote model's line is where it is called from (inference.dispatch._on_workers).
        remote = set(
            ModelVersion.objects.filter(
                status=ModelVersion.Status.PRODUCTION, backend=ModelVersion.Backend.OPENAI_COMPATIBLE
            ).values_list("model__name", flat=True)
        )
        for name in Model.objects.values_list("name", flat=True):
            depth.add_metric([name], inference_queue_depth(model_name=name, remote=name in remote))
    except Exception:
        logger.warning("metrics: could not read the queue depths", exc_info=True)
        return
    yield depth


def _audit_lag() -> Iterator[Metric]:
    from audit.selectors import audit_chain_status

    try:
        status = audit_chain_status()
    except Exception:
        logger.warning("metrics: could not read the audit chain's status", exc_info=True)
        return
    yield GaugeMetricFamily(
        "gatehouse_audit_unsealed_events", "Audit events appended since the last signed checkpoint.",
        value=status["unsealed_events"],
    )  # fmt: skip
    # How often beat asks for a checkpoint: an age past twice this means none is being written.
    interval = cast(timedelta, settings.CELERY_BEAT_SCHEDULE["audit-checkpoint"]["schedule"])
    yield GaugeMetricFamily(
        "gatehouse_audit_checkpoint_interval_seconds", "Seconds between the checkpoints beat asks for.",
        value=interval.total_seconds(),
    )  # fmt: skip
    checkpoint_at = status["checkpoint_at"]
    if checkpoint_at is not None:
        yield GaugeMetricFamily(
            "gatehouse_audit_checkpoint_age_seconds", "Seconds since the last signed checkpoint.",
            value=max(0.0, time.time() - checkpoint_at.timestamp()),
        )  # fmt: skip
    yield GaugeMetricFamily(
        "gatehouse_audit_checkpoint_matches", "1 when the last checkpoint's hash is still the chain's, else 0.",
        value=1 if status["checkpoint_matches"] in (True, None) else 0,
    )  # fmt: skip
    # Written but not yet linked into the chain by the sealer (audit.sealer): near 0 and a
    # second or so old while it keeps up.
    yield GaugeMetricFamily(
        "gatehouse_audit_pending_events", "Audit events written but not yet sealed into the hash chain.",
        value=status["pending_events"],
    )  # fmt: skip
    yield GaugeMetricFamily(
        "gatehouse_audit_pending_oldest_seconds", "Seconds the oldest unsealed audit event has waited (0: none).",
        value=status["pending_oldest_seconds"] or 0.0,
    )  # fmt: skip


def _audit_verification() -> Iterator[Metric]:
    from audit.selectors import audit_verification_figures

    try:
        figures = audit_verification_figures()
    except Exception:
        logger.warning("metrics: could not read the audit verification runs", exc_info=True)
        return
    # Counted from the recorded runs (audit.models.VerificationRun): the same on every web pod,
    # and it falls only where someone deletes runs (Prometheus takes that for a reset).
    runs = CounterMetricFamily(
        "gatehouse_audit_verify_runs", "Recorded verifications of the whole audit trail, by result (passed, "
        "failed: problems found, error: it could not finish).", labels=["result"],
    )  # fmt: skip
    for result, count in figures.runs.items():
        runs.add_metric([result], count)
    yield runs
    interval = cast(timedelta, settings.CELERY_BEAT_SCHEDULE["audit-verify"]["schedule"])
    yield GaugeMetricFamily(
        "gatehouse_audit_verify_interval_seconds", "Seconds between the verifications of the audit trail beat runs.",
        value=interval.total_seconds(),
    )  # fmt: skip
    if figures.last_at is not None:
        yield GaugeMetricFamily(
            "gatehouse_audit_verify_last_run_timestamp_seconds",
            "When the last verification that checked the whole audit trail (passed or failed) ended.",
            value=figures.last_at.timestamp(),
        )
        yield GaugeMetricFamily(
            "gatehouse_audit_verify_last_passed", "1 when the last verification of the audit trail passed, else 0.",
            value=1 if figures.last_passed else 0,
        )  # fmt: skip
    if figures.last_passed_at is not None:
        yield GaugeMetricFamily(
            "gatehouse_audit_verify_last_success_timestamp_seconds",
            "When the last verification of the audit trail that passed ended.",
            value=figures.last_passed_at.timestamp(),
        )


def _compliance_requests() -> Iterator[Metric]:
    from audit.selectors import compliance_request_figures

    try:
        figures = compliance_request_figures()
    except Exception:
        logger.warning("metrics: could not read the data-protection requests", exc_info=True)
        return
    requests = GaugeMetricFamily(
        "gatehouse_compliance_requests", "Data-protection requests held, by kind (export, erasure) and status.",
        labels=["kind", "status"],
    )  # fmt: skip
    overdue = GaugeMetricFamily(
        "gatehouse_compliance_requests_overdue",
        "Data-protection requests past their legal deadline and unanswered (open, or failed and not "
        "asked again), by kind.",
        labels=["kind"],
    )
    failed = GaugeMetricFamily(
        "gatehouse_compliance_requests_failed_unresolved",
        "Data-protection requests that failed and were not asked again for the same person, by kind.",
        labels=["kind"],
    )
    oldest = GaugeMetricFamily(
        "gatehouse_compliance_open_oldest_seconds",
        "Seconds since the oldest pending or running data-protection request was asked (0: none), by kind.",
        labels=["kind"],
    )
    for kind, found in figures.items():
        for status, count in found.by_status.items():
            requests.add_metric([kind, status], count)
        overdue.add_metric([kind], found.overdue)
        failed.add_metric([kind], found.failed_unresolved)
        oldest.add_metric([kind], found.open_oldest_seconds)
    yield requests
    yield overdue
    yield failed
    yield oldest


def _encryption_keys() -> Iterator[Metric]:
    from encryption.selectors import encryption_key_figures

    try:
        figures = encryption_key_figures()
    except Exception:
        logger.warning("metrics: could not read the encryption data keys", exc_info=True)
        return
    if figures.current_created_at is not None:
        yield GaugeMetricFamily(
            "gatehouse_encryption_data_key_created_timestamp_seconds",
            "When the current data key of encryption at rest was created.",
            value=figures.current_created_at.timestamp(),
        )
    # beat's encryption-maintain replaces the current key once it is this old.
    yield GaugeMetricFamily(
        "gatehouse_encryption_data_key_max_age_seconds",
        "Age at which the current data key is replaced (GATEHOUSE_ENCRYPTION_DATA_KEY_DAYS).",
        value=timedelta(days=settings.GATEHOUSE_ENCRYPTION_DATA_KEY_DAYS).total_seconds(),
    )
    # A retired key is deleted once nothing it sealed is left, normally within the hour.
    yield GaugeMetricFamily(
        "gatehouse_encryption_retired_data_keys",
        "Retired data keys not yet deleted: what they sealed waits to be re-encrypted.",
        value=figures.retired,
    )
    if figures.oldest_retired_at is not None:
        yield GaugeMetricFamily(
            "gatehouse_encryption_oldest_retired_timestamp_seconds",
            "When the oldest data key still present was retired.",
            value=figures.oldest_retired_at.timestamp(),
        )


def gpu_memory() -> Iterator[Metric]:
    """Memory held by this process on each CUDA device; nothing where CUDA was never used."""
    torch = sys.modules.get("torch")  # never import torch (seconds, and GPU init) just to scrape
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return
    allocated = GaugeMetricFamily(
        "gatehouse_gpu_memory_allocated_bytes", "GPU memory held by tensors, by device.", labels=["device"]
    )
    reserved = GaugeMetricFamily(
        "gatehouse_gpu_memory_reserved_bytes", "GPU memory reserved by the caching allocator, by device.",
        labels=["device"],
    )  # fmt: skip
    total = GaugeMetricFamily(
        "gatehouse_gpu_memory_total_bytes", "GPU memory the device has, by device.", labels=["device"]
    )
    for index in range(torch.cuda.device_count()):
        allocated.add_metric([str(index)], torch.cuda.memory_allocated(index))
        reserved.add_metric([str(index)], torch.cuda.memory_reserved(index))
        total.add_metric([str(index)], torch.cuda.get_device_properties(index).total_memory)
    yield allocated
    yield reserved
    yield total


def metrics_registry(*, state: bool = True) -> CollectorRegistry:
    """Every process's instruments (multiprocess mode) or this one's, this process's GPU
    memory, and (`state`) the figures read from the database and broker."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ProcessInstruments())
    registry.register(GpuCollector())
    if state:
        registry.register(StateCollector())
    return registry


class _ProcessInstruments(Collector):
    """The default registry's metrics, re-exported (a registry cannot hold another)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def _offers_the_token(request: HttpRequest, token: str) -> bool:
    scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(offered.strip().encode(), token.encode())


def _from_allowed_network(request: HttpRequest) -> bool:
    """Whether the direct peer (never X-Forwarded-For, which anyone can write) is allowed."""
    try:
        peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(
        peer in ipaddress.ip_network(network, strict=False)
        for network in settings.GATEHOUSE_METRICS_ALLOWED_NETWORKS
    )


def metrics_refusal(request: HttpRequest) -> HttpResponse | None:
    """Why this scrape may not read the metrics (they name every model), or None when it may.

    With GATEHOUSE_METRICS_TOKEN set: the bearer token, or an address in
    GATEHOUSE_METRICS_ALLOWED_NETWORKS, else 401. Without it: an allowed address, else 403,
    except with DEBUG on, where `make run` keeps the route open.
    """
    token = settings.GATEHOUSE_METRICS_TOKEN
    if (token and _offers_the_token(request, token)) or _from_allowed_network(request):
        return None
    if token:
        refused = HttpResponse(
            "A metrics token is required: send Authorization: Bearer <GATEHOUSE_METRICS_TOKEN>.\n",
            status=401,
            content_type="text/plain",
        )
        refused["WWW-Authenticate"] = "Bearer"
        return refused
    if settings.DEBUG:
        return None
    return HttpResponse(
        "/metrics is closed with DEBUG off: set GATEHOUSE_METRICS_TOKEN and scrape with "
        "Authorization: Bearer <token>, or list the scrapers' networks in "
        "GATEHOUSE_METRICS_ALLOWED_NETWORKS.\n",
        status=403,
        content_type="text/plain",
    )


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    refusal = metrics_refusal(request)
    if refusal is not None:
        return refusal
    return HttpResponse(generate_latest(metrics_registry()), content_type=CONTENT_TYPE_LATEST)
