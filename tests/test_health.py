"""Probes and the request id every response carries."""

import time
from typing import Any

import pytest
from django.test import Client

from audit.context import request_id_new
from inference.models import ModelVersion
from tests.profile import PRODUCTION


@pytest.mark.django_db
def test_healthz_says_alive(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_checks_database_cache_and_channel_layer(client: Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    expected = {"database": "ok", "cache": "ok", "channel_layer": "ok"}
    if PRODUCTION:
        expected["broker"] = "ok"  # generations go to Celery workers through it
    assert response.json()["checks"] == expected


@pytest.mark.django_db
def test_readyz_reports_a_failing_dependency(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from gatehouse import health

    def broken() -> None:
        raise ConnectionError("cache down")

    monkeypatch.setattr(health, "_check_cache", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["cache"] == "error: ConnectionError"


@pytest.mark.django_db
def test_every_response_carries_a_request_id(client: Client) -> None:
    response = client.get("/healthz")
    assert len(response["X-Request-ID"]) == 32


@pytest.mark.django_db
def test_a_safe_caller_request_id_is_kept_and_an_unsafe_one_replaced(client: Client) -> None:
    kept = client.get("/healthz", headers={"X-Request-ID": "trace-42.a_b"})
    assert kept["X-Request-ID"] == "trace-42.a_b"
    replaced = client.get("/healthz", headers={"X-Request-ID": "evil\nheader: injected"})
    assert replaced["X-Request-ID"] != "evil\nheader: injected"
    assert len(replaced["X-Request-ID"]) == 32


@pytest.mark.parametrize("proposed", ["trace-42\n", "trace-42\r\n", "\ntrace-42", "a" * 65, ""])
def test_a_request_id_must_match_the_safe_pattern_whole(proposed: str) -> None:
    # A pattern ending in `$` lets a trailing newline through; the whole id must match.
    chosen = request_id_new(proposed=proposed)
    assert chosen != proposed
    assert len(chosen) == 32


@pytest.mark.django_db
def test_openapi_schema_and_docs_are_public(client: Client) -> None:
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/auth/token/" in schema.content
    assert b"/v1/chat/completions" in schema.content
    assert client.get("/api/docs/").status_code == 200


def test_openapi_schema_validates_without_warnings(db: None) -> None:
    from django.core.management import call_command

    # --fail-on-warn turns any drf-spectacular warning (an undocumented view, say) into an error.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


@pytest.mark.skipif(PRODUCTION, reason="the in-process executor's own warm-up (workers warm theirs)")
def test_readyz_waits_for_the_models_this_process_serves(
    client: Client, demo_version: ModelVersion, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from gatehouse import health
    from inference.engines import loader

    loader.engines_clear()
    settings.GATEHOUSE_WARM_MODELS = ["demo-tiny"]
    monkeypatch.setattr(health, "_warm_up", health._InprocessWarmUp())
    # The demo model loads in milliseconds: hold the warm-up until the first probe has answered.
    release = threading.Event()
    real_warm_up = loader.engines_warm_up

    def held_warm_up(*, model_names: list[str]) -> list[str]:
        release.wait(30)
        return real_warm_up(model_names=model_names)

    monkeypatch.setattr(loader, "engines_warm_up", held_warm_up)
    first = client.get("/readyz")
    assert first.status_code == 503
    assert first.json()["checks"]["engine"] == "warming up"
    release.set()
    deadline = time.monotonic() + 60
    while (response := client.get("/readyz")).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert response.json()["checks"]["engine"] == "ok"


@pytest.mark.django_db
def test_probes_answer_a_pod_address_that_no_other_page_accepts(client: Client, settings: Any) -> None:
    # Kubernetes and Prometheus send the pod's IP as Host; it is never an allowed host.
    settings.ALLOWED_HOSTS = ["gatehouse.example.com"]
    settings.GATEHOUSE_METRICS_TOKEN = "scrape-secret"
    scraper = {"Authorization": "Bearer scrape-secret"}
    for probe in ("/healthz", "/readyz", "/metrics"):
        assert client.get(probe, HTTP_HOST="10.1.2.3:8000", headers=scraper).status_code == 200, probe
    assert client.get("/api/schema/", HTTP_HOST="10.1.2.3:8000").status_code == 400
    assert client.get("/api/schema/", HTTP_HOST="gatehouse.example.com").status_code == 200
    metrics = client.get("/metrics", HTTP_HOST="10.1.2.3:8000", headers=scraper).content.decode()
    assert 'route="healthz"' in metrics
