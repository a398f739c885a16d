"""/metrics in one process: bounded labels, the optional token, GPU memory where CUDA is used.

tests/e2e/test_operations.py scrapes a served stack (server and worker) after real traffic.
"""

import sys
from types import SimpleNamespace
from typing import Any

import pytest
from django.test import Client

from gatehouse.metrics_export import gpu_memory
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
