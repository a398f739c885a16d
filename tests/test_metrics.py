"""/metrics in one process: bounded labels, the optional token, GPU memory where CUDA is used,
the figures the alerts compare with, and the wait in a model's queue.

tests/e2e/test_operations.py scrapes a served stack (server and worker) after real traffic.
"""

import sys
import time
from types import SimpleNamespace
from typing import Any

import pytest
from django.test import Client
from prometheus_client import REGISTRY

from accounts.models import User
from gatehouse.metrics_export import gpu_memory
from inference.generation import generation_run
from inference.models import ModelVersion
from tests.inference.jobs import generation_job
from tests.prometheus_text import metric_samples

SCRAPER = {"Authorization": "Bearer scrape-secret"}


@pytest.fixture
def metrics_token(settings: Any) -> str:
    settings.GATEHOUSE_METRICS_TOKEN = "scrape-secret"
    return "scrape-secret"


@pytest.mark.django_db
def test_routes_are_labelled_by_pattern_never_by_path(client: Client, metrics_token: str) -> None:
    client.get("/api/keys/987654/")
    client.get("/no/such/page/42")
    text = client.get("/metrics", headers=SCRAPER).content.decode()
    samples = metric_samples(text)
    assert samples[("gatehouse_http_requests_total", frozenset(
        {("route", "api/keys/<int:key_id>/"), ("method", "GET"), ("status", "401")}
    ))] >= 1  # fmt: skip
    assert samples[("gatehouse_http_requests_total", frozenset(
        {("route", "unmatched"), ("method", "GET"), ("status", "404")}
    ))] >= 1  # fmt: skip
    assert "987654" not in text
    assert "no/such/page" not in text


@pytest.mark.django_db
def test_a_metrics_token_when_set_is_required(client: Client, settings: Any) -> None:
    settings.GATEHOUSE_METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    answered = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
    assert answered.status_code == 200
    assert b"gatehouse_audit_unsealed_events" in answered.content
    refused = client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert b"gatehouse_" not in refused.content
    assert refused["WWW-Authenticate"] == "Bearer"


@pytest.mark.django_db
def test_production_metrics_are_closed_without_a_token_or_a_network(
    client: Client, settings: Any, demo_version: object
) -> None:
    settings.DEBUG = False
    settings.GATEHOUSE_METRICS_TOKEN = ""
    settings.GATEHOUSE_METRICS_ALLOWED_NETWORKS = []
    refused = client.get("/metrics")
    assert refused.status_code == 403
    body = refused.content.decode()
    assert "GATEHOUSE_METRICS_TOKEN" in body
    assert "GATEHOUSE_METRICS_ALLOWED_NETWORKS" in body
    assert "demo-tiny" not in body
    assert "gatehouse_" not in body


@pytest.mark.django_db
def test_metrics_answer_the_allowed_networks_by_the_peer_address(client: Client, settings: Any) -> None:
    settings.DEBUG = False
    settings.GATEHOUSE_METRICS_TOKEN = ""
    settings.GATEHOUSE_METRICS_ALLOWED_NETWORKS = ["10.20.0.0/16"]
    settings.TRUSTED_PROXIES = ["127.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="10.20.3.4").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.21.3.4").status_code == 403
    # A forwarded address is not the peer: a proxy in front does not open the route to everyone.
    forwarded = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.20.3.4")
    assert forwarded.status_code == 403


@pytest.mark.django_db
def test_with_a_token_set_an_allowed_network_still_needs_no_token(client: Client, settings: Any) -> None:
    settings.DEBUG = False
    settings.GATEHOUSE_METRICS_TOKEN = "scrape-secret"
    settings.GATEHOUSE_METRICS_ALLOWED_NETWORKS = ["10.20.0.0/16"]
    assert client.get("/metrics", REMOTE_ADDR="10.20.3.4").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.1").status_code == 401


@pytest.mark.django_db
def test_development_keeps_metrics_open(client: Client, settings: Any) -> None:
    settings.DEBUG = True
    settings.GATEHOUSE_METRICS_TOKEN = ""
    settings.GATEHOUSE_METRICS_ALLOWED_NETWORKS = []
    assert client.get("/metrics").status_code == 200


def test_gpu_memory_is_reported_only_where_cuda_was_used(monkeypatch: pytest.MonkeyPatch) -> None:
    # No GPU here: a stand-in for torch.cuda, shaped as the real one answers.
    def cuda(*, initialized: bool) -> SimpleNamespace:
        return SimpleNamespace(
            is_available=lambda: True, is_initialized=lambda: initialized, device_count=lambda: 2,
            memory_allocated=lambda index: 1000 + index, memory_reserved=lambda index: 2000 + index,
            get_device_properties=lambda index: SimpleNamespace(total_memory=80_000 + index),
        )  # fmt: skip

    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda(initialized=False)))
    assert list(gpu_memory()) == []  # scraping must not initialise CUDA in a process that never used it
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda(initialized=True)))
    families = {family.name: family for family in gpu_memory()}
    allocated = {
        sample.labels["device"]: sample.value
        for sample in families["gatehouse_gpu_memory_allocated_bytes"].samples
    }
    assert allocated == {"0": 1000, "1": 1001}
    assert families["gatehouse_gpu_memory_reserved_bytes"].samples[1].value == 2001
    total = {
        sample.labels["device"]: sample.value
        for sample in families["gatehouse_gpu_memory_total_bytes"].samples
    }
    assert total == {"0": 80_000, "1": 80_001}


@pytest.mark.django_db
def test_the_queue_bound_and_the_checkpoint_interval_are_exported_for_alerts(
    client: Client, metrics_token: str, settings: Any
) -> None:
    settings.GATEHOUSE_INFERENCE_MAX_QUEUE = 48
    samples = metric_samples(client.get("/metrics", headers=SCRAPER).content.decode())
    assert samples[("gatehouse_queue_limit", frozenset())] == 48
    interval = settings.CELERY_BEAT_SCHEDULE["audit-checkpoint"]["schedule"].total_seconds()
    assert samples[("gatehouse_audit_checkpoint_interval_seconds", frozenset())] == interval


def _queue_wait(bucket: str) -> float:
    value = REGISTRY.get_sample_value(
        "gatehouse_queue_wait_seconds_bucket", {"model": "demo-tiny", "le": bucket}
    )
    return value or 0.0


@pytest.mark.django_db(transaction=True)
def test_a_generation_records_how_long_it_waited_in_its_queue(bob: User, demo_version: ModelVersion) -> None:
    class Relay:
        def send(self, message: dict[str, Any]) -> None:
            pass

    before = {bucket: _queue_wait(bucket) for bucket in ("300.0", "+Inf")}
    # Queued an hour ago (a worker that came back late): past the last finite bucket.
    generation_run(job=generation_job(bob, demo_version, enqueued_at=time.time() - 3600), relay=Relay())
    assert _queue_wait("300.0") == before["300.0"]
    assert _queue_wait("+Inf") == before["+Inf"] + 1
    # A job that does not say when it was queued records no wait.
    generation_run(job=generation_job(bob, demo_version), relay=Relay())
    assert _queue_wait("+Inf") == before["+Inf"] + 1
