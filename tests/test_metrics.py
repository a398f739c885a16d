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


@pytest.mark.django_db
def test_routes_are_labelled_by_pattern_never_by_path(client: Client) -> None:
    client.get("/api/keys/987654/")
    client.get("/no/such/page/42")
    text = client.get("/metrics").content.decode()
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
