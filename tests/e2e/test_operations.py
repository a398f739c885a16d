"""Operations against the served stack: /metrics after real traffic, /readyz while Redis
goes away and comes back.

The metrics tests count exact deltas, so they run on a stack of their own: what other
modules change on the shared one (a model's cap, a quota policy, chats of their own)
cannot reach their counters.
"""

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ServedGatehouse, free_port, serve
from tests.faults import RedisServer
from tests.profile import PRODUCTION
from tests.prometheus_text import Samples, metric_samples


def _scrape(gatehouse: ServedGatehouse) -> Samples:
    token = gatehouse.env["GATEHOUSE_METRICS_TOKEN"]
    response = httpx.get(f"{gatehouse.base_url}/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return metric_samples(response.text)


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGatehouse]:
    """A stack only this module's metrics tests use."""
    served, stop = serve(tmp_path_factory.mktemp("counted"))
    try:
        yield served
    finally:
        stop()


def test_metrics_count_real_traffic(counted: ServedGatehouse) -> None:
    gatehouse = counted
    before = _scrape(gatehouse)
    headers = {"Authorization": f"Bearer {gatehouse.admin_token()}"}
    body = {"model": "demo-tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8,
            "temperature": 0, "stream": True}  # fmt: skip
    for _ in range(2):
        with httpx.stream(
            "POST", f"{gatehouse.base_url}/v1/chat/completions", json=body, headers=headers, timeout=60
        ) as stream:
            assert stream.status_code == 200
            assert "[DONE]" in "".join(stream.iter_text())
    # The generation's record (and its counters) is written before the last event is sent.
    after = _scrape(gatehouse)

    def grew(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    # Greedy decoding of the demo model runs to max_tokens: 8 tokens, twice.
    assert grew("gatehouse_tokens_generated_total", model="demo-tiny", channel="api") == 16
    assert grew("gatehouse_generations_total", model="demo-tiny", channel="api", outcome="length") == 2
    assert grew("gatehouse_time_to_first_token_seconds_count", model="demo-tiny") == 2
    assert grew("gatehouse_http_requests_total", route="api/auth/token/", method="POST", status="200") == 1
    assert (
        grew("gatehouse_http_requests_total", route="v1/chat/completions", method="POST", status="200") == 2
    )
    assert _value(after, "gatehouse_active_streams", model="demo-tiny") == 0
    assert ("gatehouse_queue_depth", frozenset({("model", "demo-tiny")})) in after
    # Every login and chat is an audit event; none is sealed until the next checkpoint.
    assert _value(after, "gatehouse_audit_unsealed_events") >= 3
    assert _value(after, "gatehouse_audit_checkpoint_matches") == 1


def test_metrics_count_quota_refusals(counted: ServedGatehouse) -> None:
    gatehouse = counted
    script = (
        "from accounts.models import QuotaPolicy; from accounts.roles import Role; "
        "from accounts.services import user_create; "
        "quinn = user_create(username='quinn', password='quinn-has-a-long-password-1', roles=[Role.MEMBER]); "
        "QuotaPolicy.objects.create(name='tiny', user=quinn, tokens_per_day=5)"
    )
    gatehouse.manage("shell", "-c", script)
    token = httpx.post(
        f"{gatehouse.base_url}/api/auth/token/",
        json={"username": "quinn", "password": "quinn-has-a-long-password-1"},
    ).json()["access"]
    before = _value(_scrape(gatehouse), "gatehouse_quota_rejections_total", code="quota_exceeded")
    refused = httpx.post(
        f"{gatehouse.base_url}/v1/chat/completions",
        json={"model": "demo-tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 64},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert refused.status_code == 429, refused.text
    after = _value(_scrape(gatehouse), "gatehouse_quota_rejections_total", code="quota_exceeded")
    assert after - before == 1


def _readiness(base_url: str) -> tuple[int, dict[str, str]]:
    response = httpx.get(f"{base_url}/readyz", timeout=30)
    return response.status_code, response.json()["checks"]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, RedisServer]]:
    server = RedisServer(port=free_port(), directory=tmp_path)
    server.start()
    yield server.url, server
    server.stop()


@pytest.mark.skipif(
    not PRODUCTION, reason="Redis is the production profile's cache, channel layer and broker"
)
def test_readyz_goes_unready_without_redis_and_ready_when_it_is_back(
    tmp_path_factory: pytest.TempPathFactory, own_redis: tuple[str, RedisServer]
) -> None:
    redis_url, redis_server = own_redis
    served, stop = serve(
        tmp_path_factory.mktemp("redis-probe"),
        extra_env={"REDIS_URL": redis_url, "CELERY_BROKER_URL": redis_url},
    )
    try:
        status, checks = _readiness(served.base_url)
        assert status == 200, checks
        redis_server.stop()
        status, checks = _readiness(served.base_url)
        assert status == 503
        assert checks["database"] == "ok"
        for name in ("cache", "channel_layer", "broker"):
            assert checks[name].startswith("error:"), checks
        assert httpx.get(f"{served.base_url}/healthz").status_code == 200  # alive, just not ready
        redis_server.start()
        deadline = time.monotonic() + 30
        while (result := _readiness(served.base_url))[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert result == (200, {"database": "ok", "cache": "ok", "channel_layer": "ok", "broker": "ok"})
    finally:
        stop()


def test_logs_hold_no_prompt_and_no_credential(gatehouse: ServedGatehouse) -> None:
    marker = "pangolin-riddle-7731"
    headers = {"Authorization": f"Bearer {gatehouse.admin_token()}"}
    created = httpx.post(
        f"{gatehouse.base_url}/api/keys/", json={"name": "log-probe", "scopes": ["chat"]}, headers=headers
    ).json()
    key = created["key"]
    answered = httpx.post(
        f"{gatehouse.base_url}/v1/chat/completions",
        json={"model": "demo-tiny", "messages": [{"role": "user", "content": marker}], "max_tokens": 4},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert answered.status_code == 200
    # A key misplaced in a query string reaches the access log, masked.
    httpx.get(f"{gatehouse.base_url}/v1/models?api_key={key}")
    workdir = Path(gatehouse.env["GATEHOUSE_MODEL_ROOT"]).parent
    logs = "".join(path.read_text(errors="replace") for path in workdir.glob("*.log"))
    assert "/v1/chat/completions" in logs  # the request was logged...
    assert marker not in logs  # ...without its prompt
    secret = key.split("_", 2)[2]
    assert secret not in logs
    assert "api_key=[masked]" in logs
    assert headers["Authorization"].split()[1] not in logs
