"""Probes and the request id every response carries."""

import pytest
from django.test import Client


@pytest.mark.django_db
def test_healthz_says_alive(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_checks_database_cache_and_channel_layer(client: Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"] == {"database": "ok", "cache": "ok", "channel_layer": "ok"}


@pytest.mark.django_db
def test_readyz_reports_a_failing_dependency(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from gatehouse import health

    def broken() -> None:
        raise ConnectionError("cache down")

    monkeypatch.setitem(health._CHECKS, "cache", broken)
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
