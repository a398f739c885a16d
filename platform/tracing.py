"""OpenTelemetry tracing: off unless the standard `OTEL_*` variables ask for it.

On when `OTEL_SDK_DISABLED` is not `true` and either `OTEL_TRACES_EXPORTER` names an exporter
(`otlp`, `console`; `none` names none) or an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`). Off, nothing is set up: no tracer provider, no
instrumentation, no wrapper around the application, and nothing here imports OpenTelemetry
(the tracing SDK stays unloaded); where the request path would tag a span it asks
`tracing_on()`, one global read.

On, every process (web, worker) traces, from `tracing_setup` at start-up:
- each HTTP request: the ASGI instrumentation around the HTTP application (the chat fast path
  and Django alike), one server span named by method and route template, with its status;
- each websocket chat frame: a span of its own (`websocket_chat_span`), the root of its trace;
- the generation hand-off: the Celery instrumentation (a producer span where the task is
  published, the context in the task's message headers, a consumer span in the worker), and
  for the in-process executor the context handed to its thread with the job
  (`handoff_context`, `generation_span`);
- each upstream call: the aiohttp (web event loop) and httpx (worker) instrumentation's client
  spans, tagged with the upstream's host, the model asked and the attempt (`upstream_call`).
Every span started while a request context is bound carries `gatehouse.request_id`; server
spans, started before the id is known, are tagged when it is (`span_request_id_tag`).

Failure modes: finished spans go to a batch processor whose queue is bounded
(`OTEL_BSP_MAX_QUEUE_SIZE`) and which exports on a thread of its own, so a collector that is
down or slow never fails or slows a request: spans past the queue are dropped, and the SDK logs
it. An exporter that cannot be built (an unknown name, its package missing) is logged and left
out; tracing never stops a process from starting. At exit the provider flushes what is queued,
waiting at most the exporter's timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from audit.context import request_context_current

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

logger = logging.getLogger(__name__)

REQUEST_ID_ATTRIBUTE = "gatehouse.request_id"
MODEL_ATTRIBUTE = "gen_ai.request.model"
ATTEMPT_ATTRIBUTE = "gatehouse.upstream.attempt"
GENERATION_ATTRIBUTE = "gatehouse.generation_id"
CHAT_ID_ATTRIBUTE = "gatehouse.chat.id"
# Probes and scrapes are not traced: they would be most of the spans and say nothing.
_UNTRACED_PATHS = [r"/(healthz|readyz|metrics)$"]

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

_provider: TracerProvider | None = None
_tracer: Tracer | None = None


def tracing_on() -> bool:
    """Whether this process traces (the only question the request path asks while it does not)."""
    return _provider is not None


def tracing_wanted(environ: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces (see the module's docstring)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    names = _exporter_names(environ)
    if names:
        return any(name != "none" for name in names)
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def _exporter_names(environ: Mapping[str, str]) -> list[str]:
    return [
        name.strip().lower() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()
    ]


def tracing_setup(environ: Mapping[str, str] | None = None) -> bool:
    """At process start: trace if the environment (`os.environ`) asks; True if this process traces.

    Idempotent. Never raises: an exporter that cannot be built is logged and left out, and with
    none left tracing stays off.
    """
    environ = os.environ if environ is None else environ
    if _provider is not None or not tracing_wanted(environ):
        return tracing_on()
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporters = _exporters(environ)
    if not exporters:
        logger.error("tracing stays off: none of the exporters in OTEL_TRACES_EXPORTER could be built")
        return False
    tracing_start(processors=[BatchSpanProcessor(exporter) for exporter in exporters], process_wide=True)
    return True


def _exporters(environ: Mapping[str, str]) -> list[SpanExporter]:
    exporters = []
    for name in _exporter_names(environ) or ["otlp"]:
        if name == "none":
            continue
        try:
            exporters.append(_exporter(name, environ))
        except Exception:  # an unusable exporter must not stop the process from serving
            logger.exception("tracing: the %r trace exporter cannot be used; it is left out", name)
    return exporters


def _exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    """One exporter by its OTEL_TRACES_EXPORTER name; it reads its own OTEL_EXPORTER_OTLP_* settings."""
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"unknown trace exporter {name!r} (otlp, console or none)")
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol == "grpc":
        # Not a dependency of Gatehouse: installed by the operator who wants it.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
            OTLPSpanExporter as GrpcSpanExporter,
        )

        exporter: SpanExporter = GrpcSpanExporter()
        return exporter
    if protocol != "http/protobuf":
        raise ValueError(f"unsupported OTLP protocol {protocol!r} (http/protobuf or grpc)")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def tracing_start(*, processors: Sequence[SpanProcessor], process_wide: bool = False) -> TracerProvider:
    """Trace from now on, handing finished spans to `processors`, and instrument Celery,
    aiohttp and httpx. `process_wide`: also the global tracer provider (for any other
    library's instrumentation), flushed at exit; tests leave it off and call `tracing_stop`.

    The provider's resource comes from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
    (service name `gatehouse` when neither names one), its sampler from OTEL_TRACES_SAMPLER.
    """
    global _provider, _tracer
    from opentelemetry import trace
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider

    if _provider is not None:
        raise RuntimeError("tracing has started already")
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "gatehouse"}))
    provider = TracerProvider(resource=resource, shutdown_on_exit=process_wide)
    provider.add_span_processor(_tagging_processor())
    for processor in processors:
        provider.add_span_processor(processor)
    CeleryInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    AioHttpClientInstrumentor().instrument(tracer_provider=provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    if process_wide:
        trace.set_tracer_provider(provider)
    _provider, _tracer = provider, provider.get_tracer("gatehouse")
    return provider


def tracing_stop() -> None:
    """Stop tracing: undo the instrumentation, flush and shut the provider down."""
    global _provider, _tracer
    if _provider is None:
        return
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    provider, _provider, _tracer = _provider, None, None
    CeleryInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
    AioHttpClientInstrumentor().uninstrument()
    HTTPXClientInstrumentor().uninstrument()
    provider.shutdown()


def _tagging_processor() -> SpanProcessor:
    from opentelemetry.sdk.trace import Span as SdkSpan
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.trace import SpanKind

    class RequestTagging(SpanProcessor):
        """Tags each span as it starts: the bound request's id, and an upstream call's client
        spans with what they asked of whom. Reads context variables only: it cannot fail."""

        def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
            context = request_context_current()
            if context is not None and context.request_id:
                span.set_attribute(REQUEST_ID_ATTRIBUTE, context.request_id)
            if span.kind is SpanKind.CLIENT:
                call = _upstream_call.get()
                if call is not None:
                    call.tag(span)

    return RequestTagging()


def _started_tracer() -> Tracer:
    if _tracer is None:
        raise RuntimeError("tracing is off: ask tracing_on() first")
    return _tracer


# --- HTTP -------------------------------------------------------------------------------------


def tracing_http_app(app: ASGIApp) -> ASGIApp:
    """The HTTP application as it is while tracing is off; on, inside the ASGI instrumentation
    (a server span per request, without its per-message `send`/`receive` spans)."""
    if _provider is None:
        return app
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.util.http import ExcludeList

    traced: ASGIApp = OpenTelemetryMiddleware(
        app,
        excluded_urls=ExcludeList(_UNTRACED_PATHS),
        default_span_details=_server_span_details,
        tracer_provider=_provider,
        exclude_spans=["receive", "send"],
    )
    return traced


def _server_span_details(scope: Scope) -> tuple[str, dict[str, str]]:
    """The server span's name, `POST /v1/chat/completions`: the route's template, never the
    path (paths carry ids); the method alone where no route matches."""
    method = str(scope.get("method") or "HTTP")
    route = _route_template(str(scope.get("path", "")))
    if route is None:
        return method, {}
    return f"{method} {route}", {"http.route": route}


def _route_template(path: str) -> str | None:
    from django.urls import Resolver404, resolve

    try:
        match = resolve(path)
    except Resolver404:
        return None
    return "/" + match.route if match.route else None


def span_request_id_tag(request_id: str) -> None:
    """Tag the current span (the request's server span) with the request id, known only once
    the request is read. Only while `tracing_on()`."""
    from opentelemetry import trace

    trace.get_current_span().set_attribute(REQUEST_ID_ATTRIBUTE, request_id)


# --- websocket chats and the generation hand-off ----------------------------------------------


@contextmanager
def websocket_chat_span(*, chat_id: str, model: str) -> Iterator[None]:
    """One chat frame's handling (its admission, dispatch and `start`): the root of the chat's
    trace, whatever else the connection carries; its generation's spans are its children.
    Only while `tracing_on()`."""
    from opentelemetry.context import Context
    from opentelemetry.trace import SpanKind

    with _started_tracer().start_as_current_span(
        "websocket chat",
        context=Context(),
        kind=SpanKind.SERVER,
        attributes={CHAT_ID_ATTRIBUTE: chat_id, MODEL_ATTRIBUTE: model, "http.route": "/ws/chat/"},
    ):
        yield


def handoff_context() -> Context:
    """The trace context to hand over with a job to the thread that runs it. Only while
    `tracing_on()`."""
    from opentelemetry.context import get_current

    return get_current()


@contextmanager
def generation_span(parent: Context, *, model: str, generation_id: str, request_id: str) -> Iterator[None]:
    """A generation run on this process's executor, a child of the span that dispatched it.
    Only while `tracing_on()`."""
    from opentelemetry.trace import SpanKind

    with _started_tracer().start_as_current_span(
        "generation.run",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            MODEL_ATTRIBUTE: model,
            GENERATION_ATTRIBUTE: generation_id,
            REQUEST_ID_ATTRIBUTE: request_id,
        },
    ):
        yield


# --- upstream calls ---------------------------------------------------------------------------


class UpstreamCall:
    """One call of a remote version, over its tries: the client span of each HTTP request made
    while it is bound is tagged with the upstream's host and port, the model asked there, and
    the attempt (1 for the first request, 2 for the first retry, on whichever upstream)."""

    def __init__(self) -> None:
        self.host: str | None = None
        self.port: int | None = None
        self.model = ""
        self.attempts = 0
        self._token: Token[UpstreamCall | None] = _upstream_call.set(self)

    def target(self, *, base_url: str, model: str) -> None:
        """The upstream the next tries go to."""
        parts = urlsplit(base_url)
        self.host, self.port, self.model = parts.hostname, parts.port, model

    def tag(self, span: Span) -> None:
        self.attempts += 1
        attributes: dict[str, str | int] = {MODEL_ATTRIBUTE: self.model, ATTEMPT_ATTRIBUTE: self.attempts}
        if self.host:
            attributes["server.address"] = self.host
        if self.port:
            attributes["server.port"] = self.port
        span.set_attributes(attributes)

    def end(self) -> None:
        _upstream_call.reset(self._token)


_upstream_call: ContextVar[UpstreamCall | None] = ContextVar("gatehouse_upstream_call", default=None)


def upstream_call() -> UpstreamCall:
    """Bind a call of a remote version until its `end()`. Only while `tracing_on()`."""
    return UpstreamCall()
