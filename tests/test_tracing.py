"""OpenTelemetry tracing (gatehouse.tracing): one chat is one trace, from the web process to
where it is generated to the upstream it asks, every span carrying the request id; off by
default, and then nothing of the SDK is set up or even imported.

Spans of this process are read from an in-memory exporter. In the production profile the
generations run on a Celery worker of the test's own, serving its own model's queue, which
exports its spans over OTLP to a collector on loopback.
"""

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from accounts.models import User
from gatehouse import tracing
from gatehouse.asgi import application
from gatehouse.tracing import ATTEMPT_ATTRIBUTE, MODEL_ATTRIBUTE, REQUEST_ID_ATTRIBUTE
from inference.chat.asgi import ChatCompletionsRoute
from inference.engines.loader import engines_clear
from inference.services import model_register, model_version_promote, model_version_register_remote
from tests.celery_worker import CeleryWorker, database_url
from tests.fake_openai import FakeUpstream, fake_upstream
from tests.inference.fast_path import api_key_mint
from tests.inference.websocket import access_token, chat_frame, communicator_for, frames_until_end
from tests.otlp_collector import OtlpCollector, RecordedSpan, otlp_collector
from tests.profile import PRODUCTION
from tests.waiting import eventually

pytestmark = pytest.mark.django_db(transaction=True)

# A model of these tests' own: in the production profile its queue is served by their worker only.
MODEL = "traced-model"
UPSTREAM_MODEL = "upstream-model"
TASK = "inference.tasks.inference_generate"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as server:
        yield server


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, its spans kept in memory."""
    kept = InMemorySpanExporter()
    tracing.tracing_start(processors=[SimpleSpanProcessor(kept)])
    yield kept
    tracing.tracing_stop()


@pytest.fixture
def traced_worker(tmp_path: Path, model_root: Path, settings: Any) -> Iterator[OtlpCollector | None]:
    """Remote models generated where local ones are. Production profile: a worker serving
    MODEL's queue, tracing (OTEL_* variables only) to a collector on loopback; embedded: None,
    generations run on this process's executor."""
    settings.GATEHOUSE_REMOTE_GENERATION = "worker"
    if not PRODUCTION:
        yield None
        return
    with otlp_collector() as collector:
        environ = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
        worker = CeleryWorker(
            env={
                **environ,
                "DATABASE_URL": database_url(django_settings.DATABASES["default"]),
                "REDIS_URL": django_settings.REDIS_URL,
                "GATEHOUSE_MODEL_ROOT": str(model_root),
                "GATEHOUSE_REMOTE_ALLOWED_HOSTS": "127.0.0.1",
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
                "OTEL_BSP_SCHEDULE_DELAY": "50",
                "OTEL_SERVICE_NAME": "gatehouse-worker",
            },
            log_path=tmp_path / "traced-worker.log",
            queues=f"inference.{MODEL}",
            name="traced",
        )
        worker.start()
        try:
            yield collector
        finally:
            worker.stop()


def _traced_model(alice: User, upstream: FakeUpstream, name: str = MODEL) -> None:
    model = model_register(name=name, open_to_all=True, actor=alice)
    version = model_version_register_remote(
        model=model, label="t1", base_url=upstream.base_url, remote_model=UPSTREAM_MODEL, actor=alice
    )
    model_version_promote(version=version, actor=alice)
    engines_clear()


async def _chat_post(app: Any, *, key: str, request_id: str, model: str = MODEL) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "stream": True}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        return await client.post(
            "/v1/chat/completions",
            content=orjson.dumps(body),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {key}",
                "X-Request-ID": request_id,
            },
        )


def _recorded(spans: Sequence[ReadableSpan]) -> list[RecordedSpan]:
    return [
        RecordedSpan(
            name=span.name,
            kind=span.kind.name,
            trace_id=f"{span.context.trace_id:032x}",
            span_id=f"{span.context.span_id:016x}",
            parent_id=f"{span.parent.span_id:016x}" if span.parent is not None else None,
            attributes=dict(span.attributes or {}),
            service=str(span.resource.attributes.get("service.name", "")),
        )
        for span in spans
        if span.context is not None
    ]


async def _traces_of(
    exporter: InMemorySpanExporter, collector: OtlpCollector | None, *, request_id: str, calls: int = 1
) -> list[list[RecordedSpan]]:
    """The request's upstream calls, each with its ancestors up to its trace's root, once
    `calls` of them are recorded with every ancestor (a worker's spans end, and are exported,
    after the client has its answer). A parent that never turns up fails the test."""

    def ended() -> list[list[RecordedSpan]] | None:
        spans = _recorded(exporter.get_finished_spans()) + (collector.received() if collector else [])
        called = [
            span
            for span in spans
            if span.kind == "CLIENT" and span.attributes.get(REQUEST_ID_ATTRIBUTE) == request_id
        ]
        chains = [_chain(spans, span) for span in called]
        if len(chains) < calls or any(chain[-1].parent_id is not None for chain in chains):
            return None
        return chains

    found: list[list[RecordedSpan]] = await eventually(ended)
    return found


def _chain(spans: list[RecordedSpan], leaf: RecordedSpan) -> list[RecordedSpan]:
    """`leaf` and its recorded ancestors, nearest first: up to its trace's root when all are in."""
    by_id = {span.span_id: span for span in spans}
    chain = [leaf]
    while (parent_id := chain[-1].parent_id) is not None and parent_id in by_id:
        chain.append(by_id[parent_id])
    return chain


def _worker_side() -> list[str]:
    """The spans between the web's and the upstream call, where the generation runs."""
    if PRODUCTION:
        return [f"run/{TASK}", f"apply_async/{TASK}"]
    return ["generation.run"]


def _upstream_call_checked(chain: list[RecordedSpan], upstream: FakeUpstream, *, request_id: str) -> None:
    client = chain[0]
    assert client.kind == "CLIENT"
    assert client.attributes[MODEL_ATTRIBUTE] == UPSTREAM_MODEL
    assert client.attributes["server.address"] == "127.0.0.1"
    assert client.attributes["server.port"] == int(upstream.base_url.rsplit(":", 1)[1].split("/")[0])
    assert client.attributes[ATTEMPT_ATTRIBUTE] == 1
    assert client.attributes["http.status_code"] == 200
    # One trace, every span of it carrying the request id.
    assert {span.trace_id for span in chain} == {chain[-1].trace_id}
    assert [span.attributes.get(REQUEST_ID_ATTRIBUTE) for span in chain] == [request_id] * len(chain)
    if PRODUCTION:
        consumer = next(span for span in chain if span.kind == "CONSUMER")
        assert consumer.service == "gatehouse-worker"  # exported by the worker process itself


async def test_an_http_chat_is_one_trace_from_the_server_through_the_worker_to_the_upstream(
    alice: User,
    bob: User,
    upstream: FakeUpstream,
    exporter: InMemorySpanExporter,
    traced_worker: OtlpCollector | None,
) -> None:
    await database_sync_to_async(_traced_model)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob)
    response = await _chat_post(tracing.tracing_http_app(application), key=key, request_id="traced-http")
    assert response.status_code == 200, response.text
    (chain,) = await _traces_of(exporter, traced_worker, request_id="traced-http")
    assert [span.name for span in chain] == ["POST", *_worker_side(), "POST /v1/chat/completions"]
    server = chain[-1]
    assert server.kind == "SERVER"
    assert server.attributes["http.route"] == "/v1/chat/completions"
    assert server.attributes["http.status_code"] == 200
    _upstream_call_checked(chain, upstream, request_id="traced-http")


async def test_a_websocket_chat_is_one_trace_from_its_frame_through_the_worker_to_the_upstream(
    alice: User,
    bob: User,
    upstream: FakeUpstream,
    exporter: InMemorySpanExporter,
    traced_worker: OtlpCollector | None,
) -> None:
    await database_sync_to_async(_traced_model)(alice, upstream)
    communicator = communicator_for(
        token=await access_token(bob), headers=[(b"x-request-id", b"traced-websocket")]
    )
    await communicator.connect()
    await communicator.send_json_to(chat_frame("first", model=MODEL))
    frames = await frames_until_end(communicator, "first")
    await communicator.send_json_to(chat_frame("second", model=MODEL))
    frames += await frames_until_end(communicator, "second")
    await communicator.disconnect()
    assert [frame["type"] for frame in frames if frame["type"] != "token"] == ["start", "done"] * 2
    chains = await _traces_of(exporter, traced_worker, request_id="traced-websocket", calls=2)
    for chain in chains:
        assert [span.name for span in chain] == ["POST", *_worker_side(), "websocket chat"]
        _upstream_call_checked(chain, upstream, request_id="traced-websocket")
    # One span per chat frame, each the root of its own trace (not one per connection).
    roots = [chain[-1] for chain in chains]
    assert sorted(root.attributes["gatehouse.chat.id"] for root in roots) == ["first", "second"]
    assert len({root.trace_id for root in roots}) == 2


async def test_upstream_calls_on_the_event_loop_are_spans_of_the_request_numbered_by_attempt(
    alice: User, bob: User, upstream: FakeUpstream, exporter: InMemorySpanExporter, settings: Any
) -> None:
    """A remote model called by the web process itself (the default): the server span's
    children are its upstream calls, a retry after a 503 the second attempt."""
    settings.GATEHOUSE_REMOTE_GENERATION = "web"
    upstream.mode = "fail_first_1"
    await database_sync_to_async(_traced_model)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob)
    response = await _chat_post(tracing.tracing_http_app(application), key=key, request_id="traced-loop")
    assert response.status_code == 200, response.text
    spans = _recorded(exporter.get_finished_spans())
    (server,) = [span for span in spans if span.kind == "SERVER"]
    calls = [span for span in spans if span.kind == "CLIENT"]
    assert [call.parent_id for call in calls] == [server.span_id, server.span_id]
    assert [call.attributes[ATTEMPT_ATTRIBUTE] for call in calls] == [1, 2]
    assert [call.attributes["http.status_code"] for call in calls] == [503, 200]
    assert {call.attributes[MODEL_ATTRIBUTE] for call in calls} == {UPSTREAM_MODEL}
    assert [span.attributes[REQUEST_ID_ATTRIBUTE] for span in [server, *calls]] == ["traced-loop"] * 3


async def test_a_django_request_is_named_by_its_route_template_and_probes_are_not_traced(
    alice: User, bob: User, upstream: FakeUpstream, exporter: InMemorySpanExporter
) -> None:
    await database_sync_to_async(_traced_model)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob, ("models:read",))
    transport = httpx.ASGITransport(app=tracing.tracing_http_app(application))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        found = await client.get(
            f"/v1/models/{MODEL}", headers={"Authorization": f"Bearer {key}", "X-Request-ID": "traced-django"}
        )
        missing = await client.get(
            "/v1/models/nowhere", headers={"Authorization": f"Bearer {key}", "X-Request-ID": "traced-404"}
        )
        assert (await client.get("/healthz")).status_code == 200
    assert (found.status_code, missing.status_code) == (200, 404)
    spans = _recorded(exporter.get_finished_spans())
    assert [(span.name, span.kind) for span in spans] == [("GET /v1/models/<str:model_name>", "SERVER")] * 2
    assert [span.attributes["http.status_code"] for span in spans] == [200, 404]
    # Tagged by the request-id middleware, Django's own path.
    assert [span.attributes[REQUEST_ID_ATTRIBUTE] for span in spans] == ["traced-django", "traced-404"]


class _StuckExporter(SpanExporter):
    """A collector that never answers: each export waits until the test lets it go."""

    def __init__(self) -> None:
        self.exporting = threading.Event()
        self.released = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exporting.set()
        self.released.wait(timeout=60)
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.released.set()


async def test_a_collector_that_never_answers_holds_no_request_up(
    alice: User, bob: User, upstream: FakeUpstream, settings: Any
) -> None:
    settings.GATEHOUSE_REMOTE_GENERATION = "web"
    stuck = _StuckExporter()
    tracing.tracing_start(processors=[BatchSpanProcessor(stuck, max_queue_size=4, max_export_batch_size=1)])
    try:
        await database_sync_to_async(_traced_model)(alice, upstream)
        key = await database_sync_to_async(api_key_mint)(bob)
        app = tracing.tracing_http_app(application)
        assert (await _chat_post(app, key=key, request_id="stuck-1")).status_code == 200
        await eventually(lambda: True if stuck.exporting.is_set() else None)
        # The exporter is stuck mid-export, and its queue fills: requests are served all the same.
        for number in range(2, 5):
            response = await _chat_post(app, key=key, request_id=f"stuck-{number}")
            assert response.status_code == 200, response.text
        assert not stuck.released.is_set()
    finally:
        stuck.released.set()
        tracing.tracing_stop()


@pytest.mark.usefixtures("inference_backend")
async def test_with_tracing_off_nothing_is_set_up_and_no_span_is_recorded(
    alice: User, bob: User, upstream: FakeUpstream, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A model the suite's own worker serves (in the production profile).
    untraced = "remote-model"
    assert not tracing.tracing_on()
    assert not isinstance(otel_trace.get_tracer_provider(), TracerProvider)
    assert isinstance(application.application_mapping["http"], ChatCompletionsRoute)
    # Whatever started a span through the global API would be recorded here: nothing does.
    kept = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(kept))
    monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", provider)
    await database_sync_to_async(_traced_model)(alice, upstream, untraced)
    key = await database_sync_to_async(api_key_mint)(bob)
    for remote_generation in ("web", "worker"):
        settings.GATEHOUSE_REMOTE_GENERATION = remote_generation
        response = await _chat_post(
            application, key=key, request_id=f"untraced-{remote_generation}", model=untraced
        )
        assert response.status_code == 200, response.text
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to(chat_frame("untraced", model=untraced))
    assert (await frames_until_end(communicator, "untraced"))[-1]["type"] == "done"
    await communicator.disconnect()
    assert kept.get_finished_spans() == ()


def _started_process(environ: dict[str, str]) -> dict[str, Any]:
    """What a process that starts the web application (as the server does) has set up."""
    script = (
        "import json, sys\n"
        "import gatehouse.asgi\n"
        "sdk = 'opentelemetry.sdk.trace' in sys.modules\n"
        "from opentelemetry import trace\n"
        "print(json.dumps({'sdk': sdk, 'provider': type(trace.get_tracer_provider()).__name__,\n"
        "    'http': type(gatehouse.asgi.application.application_mapping['http']).__name__}))\n"
    )
    clean = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=django_settings.BASE_DIR,
        env={**clean, "DJANGO_SETTINGS_MODULE": "gatehouse.settings", **environ},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_process_started_without_otel_variables_loads_no_sdk_and_sets_no_provider() -> None:
    assert _started_process({}) == {
        "sdk": False,
        "provider": "ProxyTracerProvider",
        "http": "ChatCompletionsRoute",
    }


def test_a_process_started_with_an_exporter_named_traces_its_http_application() -> None:
    assert _started_process({"OTEL_TRACES_EXPORTER": "console"}) == {
        "sdk": True,
        "provider": "TracerProvider",
        "http": "OpenTelemetryMiddleware",
    }


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "gatehouse"}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console, none"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, True),
    ],
)
def test_tracing_is_wanted_only_where_the_otel_variables_name_an_exporter(
    environ: dict[str, str], wanted: bool
) -> None:
    assert tracing.tracing_wanted(environ) is wanted


def test_an_exporter_that_cannot_be_built_leaves_tracing_off(caplog: pytest.LogCaptureFixture) -> None:
    assert tracing.tracing_setup({"OTEL_TRACES_EXPORTER": "zipkin"}) is False
    assert not tracing.tracing_on()
    assert "zipkin" in caplog.text
