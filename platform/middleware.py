"""Request id on every request and response (and the audit context that carries it); request metrics."""

import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, cast

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase
from django.urls import resolve
from django.utils.decorators import sync_and_async_middleware

from accounts.client_ip import client_ip_resolve
from audit.context import RequestContext, request_context_bound, request_id_new
from gatehouse.metrics import HTTP_LATENCY, HTTP_REQUESTS
from gatehouse.tracing import span_request_id_tag, tracing_on

REQUEST_ID_HEADER = "X-Request-ID"


def _context_for(request: HttpRequest) -> RequestContext:
    return RequestContext(
        request_id=request_id_new(proposed=request.headers.get(REQUEST_ID_HEADER)),
        client_ip=client_ip_resolve(
            remote_addr=request.META.get("REMOTE_ADDR"), forwarded_for=request.headers.get("X-Forwarded-For")
        ),
        user_agent=request.headers.get("User-Agent", "")[:512],
    )


# Django's two shapes of the next step in the chain.
GetResponse = Callable[[HttpRequest], HttpResponseBase] | Callable[[HttpRequest], Awaitable[HttpResponseBase]]
# Code around the rest of the chain: what comes before its `yield` runs first, the response is
# sent in at the `yield`, and the rest runs after. A `with` spanning the `yield` covers the
# whole call, in a sync or an async chain alike.
Hook = Callable[[HttpRequest], Generator[None, HttpResponseBase, None]]


def _around(hook: Hook) -> Callable[[GetResponse], GetResponse]:
    """A middleware, sync or async as the chain is, that runs `hook` around each request."""

    def finish(steps: Generator[None, HttpResponseBase, None], response: HttpResponseBase) -> None:
        try:
            steps.send(response)
        except StopIteration:
            return
        raise RuntimeError(f"{hook.__name__} must yield once")

    @sync_and_async_middleware
    def factory(get_response: GetResponse) -> GetResponse:
        if iscoroutinefunction(get_response):
            async_get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = get_response

            async def async_middleware(request: HttpRequest) -> HttpResponseBase:
                steps = hook(request)
                next(steps)
                try:
                    response = await async_get_response(request)
                except BaseException:
                    steps.close()  # unwinds the hook's `with` blocks; the error goes on
                    raise
                finish(steps, response)
                return response

            return async_middleware

        sync_get_response: Callable[[HttpRequest], HttpResponseBase] = get_response  # type: ignore[assignment]

        def middleware(request: HttpRequest) -> HttpResponseBase:
            steps = hook(request)
            next(steps)
            try:
                response = sync_get_response(request)
            except BaseException:
                steps.close()
                raise
            finish(steps, response)
            return response

        return middleware

    return factory


def _request_id(request: HttpRequest) -> Generator[None, HttpResponseBase, None]:
    context = _context_for(request)
    request.request_id = context.request_id  # type: ignore[attr-defined]
    if tracing_on():
        span_request_id_tag(context.request_id)
    with request_context_bound(context):
        response = yield
    response[REQUEST_ID_HEADER] = context.request_id


def _request_metrics(request: HttpRequest) -> Generator[None, HttpResponseBase, None]:
    """Requests and latency by route for /metrics. A stream is timed to its first byte."""
    started = time.perf_counter()
    response = yield
    # The route pattern ("api/keys/<int:key_id>/"), never the path: paths carry ids.
    match = getattr(request, "resolver_match", None)
    route = match.route if match is not None else "unmatched"
    method = request.method or "?"
    HTTP_REQUESTS.labels(route=route, method=method, status=str(response.status_code)).inc()
    HTTP_LATENCY.labels(route=route, method=method).observe(time.perf_counter() - started)


RequestIdMiddleware = _around(_request_id)
RequestMetricsMiddleware = _around(_request_metrics)


_PROBES = {"/healthz", "/readyz", "/metrics"}


@sync_and_async_middleware
def ProbeMiddleware(get_response: GetResponse) -> GetResponse:  # noqa: N802 - named like Django's middleware
    """Answer the probes and /metrics before anything validates the Host header.

    Kubernetes probes and Prometheus address a pod by its IP, which is never in
    ALLOWED_HOSTS; the host check guards the URLs Django builds, and these three build none.
    Everything else still goes through the host check.
    """
    if iscoroutinefunction(get_response):
        async_get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = get_response

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            if request.path_info in _PROBES:
                return await sync_to_async(_probe)(request)
            return await async_get_response(request)

        return async_middleware

    sync_get_response: Callable[[HttpRequest], HttpResponseBase] = get_response  # type: ignore[assignment]

    def middleware(request: HttpRequest) -> HttpResponseBase:
        return _probe(request) if request.path_info in _PROBES else sync_get_response(request)

    return middleware


def _probe(request: HttpRequest) -> HttpResponseBase:
    match = resolve(request.path_info)
    request.resolver_match = match  # labels the request in /metrics like any other route
    response: HttpResponseBase = match.func(request, *match.args, **match.kwargs)
    return response


@sync_and_async_middleware
def StaticFilesMiddleware(get_response: GetResponse) -> GetResponse:  # noqa: N802 - named like Django's middleware
    """WhiteNoise's static files, without making the rest of the chain synchronous.

    WhiteNoise's middleware is synchronous only, so under ASGI Django ran everything after
    it (every view) through a thread and an event loop of its own per request. Here the file
    lookup (a dictionary read) runs inline, and only a static file is served by WhiteNoise.
    """
    from whitenoise.middleware import WhiteNoiseMiddleware  # type: ignore[import-untyped]

    whitenoise: Any = WhiteNoiseMiddleware(get_response)
    if not iscoroutinefunction(get_response):
        return cast(GetResponse, whitenoise)
    async_get_response = cast(Callable[[HttpRequest], Awaitable[HttpResponseBase]], get_response)

    async def middleware(request: HttpRequest) -> HttpResponseBase:
        if whitenoise.autorefresh:
            static_file = await sync_to_async(whitenoise.find_file)(request.path_info)
        else:
            static_file = whitenoise.files.get(request.path_info)
        if static_file is not None:
            return cast(HttpResponseBase, whitenoise.serve(static_file, request))
        return await async_get_response(request)

    return middleware
