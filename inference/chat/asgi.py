"""`POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings` and `/v1/responses`, and
`GET /v1/models` and `/v1/models/{model}`, served straight from ASGI: the doors without
Django's request cycle (whose middleware alone hops to a thread and back about twenty times
for a GET).

Django's handler, its middleware and DRF cost more server time per request than a whole
Python proxy does; on the path every chat takes, this route does only what they would do for
it: the Host check, the request id and audit context, the client's address, the security
headers, bearer authentication, the JSON body, request metrics. What it answers comes from
the same door (`inference.chat.http`) the DRF view uses.

Anything else goes on to Django unchanged: another path or method, no bearer credential (a
console session), a body that is not JSON, a GET that asks for HTML (DRF's browsable pages), a
plain-HTTP request that must be redirected.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from accounts.client_ip import client_ip_resolve
from accounts.principal import CredentialRejected, Principal, principal_from_bearer
from audit.context import RequestContext, request_context_bound, request_id_new
from gatehouse.database_calls import cached_or_reloaded
from gatehouse.json_parsing import JsonUnreadable, json_document_parse
from gatehouse.metrics import HTTP_LATENCY, HTTP_REQUESTS
from gatehouse.tracing import span_request_id_tag, tracing_on
from inference.chat.embeddings_http import embeddings_serve
from inference.chat.http import chat_completions_serve, error_respond, responses_serve, text_completions_serve
from inference.chat.models_http import model_detail_serve, models_list_serve

Serve = Callable[..., Awaitable[None]]
# Each path served here: its name as Django's resolver gives it (the request metrics' route)
# and the door's function that answers it.
DOORS: dict[str, tuple[str, Serve]] = {
    "/v1/chat/completions": ("v1/chat/completions", chat_completions_serve),
    "/v1/completions": ("v1/completions", text_completions_serve),
    "/v1/embeddings": ("v1/embeddings", embeddings_serve),
    "/v1/responses": ("v1/responses", responses_serve),
}
# The GETs served here: the path, or the prefix before its one argument (`model_name`).
MODELS_PATH, MODEL_PREFIX = "/v1/models", "/v1/models/"
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ChatCompletionsRoute:
    """Wraps the HTTP application: the DOORS' requests with a bearer credential are served here."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        door = _door(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if door is not None:
            headers = _headers(scope)
            if _ours(scope, headers):
                route, serve, arguments = door
                await _Exchange(scope, receive, send, headers, route=route, door=serve).serve(arguments)
                return
        await self.app(scope, receive, send)


def _door(method: str, path: str) -> tuple[str, Serve, dict[str, str]] | None:
    """The door for `method` on `path`: its route's name, its function and the arguments in
    the path; None where Django answers (a name with a slash is no model's)."""
    if method == "POST":
        door = DOORS.get(path)
        return None if door is None else (*door, {})
    if method != "GET":
        return None
    if path == MODELS_PATH:
        return "v1/models", models_list_serve, {}
    name = path.removeprefix(MODEL_PREFIX)
    if name != path and name and "/" not in name:
        return "v1/models/<str:model_name>", model_detail_serve, {"model_name": name}
    return None


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


def _ours(scope: Scope, headers: dict[str, str]) -> bool:
    """A bearer request for JSON: a POST that sends JSON, a GET that does not ask for HTML."""
    scheme, _, _ = headers.get("authorization", "").partition(" ")
    if scope["method"] == "GET":
        wanted = "text/html" not in headers.get("accept", "").lower()
    else:
        wanted = headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"
    return (
        scheme.lower() == "bearer"
        and wanted
        and not (settings.SECURE_SSL_REDIRECT and not _secure(scope, headers))
    )


def _secure(scope: Scope, headers: dict[str, str]) -> bool:
    if scope.get("scheme") == "https":
        return True
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if not proxy_header:
        return False
    name, value = proxy_header
    return bool(headers.get(name.removeprefix("HTTP_").replace("_", "-").lower()) == value)


def _host_allowed(headers: dict[str, str]) -> bool:
    domain, _ = split_domain_port(headers.get("host", ""))
    allowed = settings.ALLOWED_HOSTS or ([".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
    return bool(domain) and validate_host(domain, allowed)


class _Exchange:
    """One request and its answer: the `Responder` the door writes to."""

    def __init__(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str], *, route: str, door: Serve
    ) -> None:
        self.scope, self.receive, self.send, self.headers = scope, receive, send, headers
        self.route, self.door = route, door
        self.started = time.perf_counter()
        self.context = RequestContext(
            request_id=request_id_new(proposed=headers.get("x-request-id")),
            client_ip=client_ip_resolve(
                remote_addr=(scope.get("client") or (None,))[0], forwarded_for=headers.get("x-forwarded-for")
            ),
            user_agent=headers.get("user-agent", "")[:512],
        )
        self.secure = _secure(scope, headers)
        self.status = 0

    async def serve(self, arguments: dict[str, str]) -> None:
        """Answer the request: a GET with the door's `arguments` from its path, a POST with
        its JSON body."""
        with request_context_bound(self.context):
            if tracing_on():
                span_request_id_tag(self.context.request_id)
            if not _host_allowed(self.headers):
                await error_respond(
                    self, status=400, message="The Host header is not allowed here.", code="bad_host"
                )
                return
            if self.scope["method"] == "GET":
                principal = await self._principal()
                if principal is not None:
                    await self.door(principal=principal, responder=self, **arguments)
                return
            body = await self._body()
            if body is None:
                return
            principal = await self._principal()
            if principal is None:
                return
            try:
                data = json_document_parse(text=body)
            except JsonUnreadable as error:
                await error_respond(
                    self, status=400, message=f"JSON parse error - {error}", code="parse_error"
                )
                return
            await self._until_disconnect(
                self.door(
                    principal=principal,
                    data=data,
                    request_id=self.context.request_id,
                    client_ip=self.context.client_ip,
                    responder=self,
                )
            )

    async def _body(self) -> bytes | None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if limit is not None and size > limit:
                await error_respond(
                    self, status=413, message=f"The request body is over {limit} bytes.", code="too_large"
                )
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _principal(self) -> Principal | None:
        """The bearer credential's caller, from this process's caches where it can be."""
        raw = self.headers.get("authorization", "").partition(" ")[2].strip()
        try:
            if not raw:
                raise CredentialRejected("The Authorization header has no token.")
            return await cached_or_reloaded(principal_from_bearer, raw=raw, client_ip=self.context.client_ip)
        except CredentialRejected as rejected:
            await error_respond(
                self,
                status=401,
                message=rejected.message,
                code="authentication_failed",
                headers={"WWW-Authenticate": 'Bearer realm="api"'},
            )
            return None

    async def _until_disconnect(self, serving: Awaitable[None]) -> None:
        """Serve; if the client hangs up first, cancel the serving (the chat records itself)."""
        task = asyncio.ensure_future(serving)
        watcher = asyncio.ensure_future(self._disconnected())
        try:
            await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
            watcher.cancel()
        try:
            await task
        except asyncio.CancelledError:
            if not watcher.cancelled() and watcher.done():
                return  # the client left: nothing more to say to it
            raise

    async def _disconnected(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass

    # The Responder.
    async def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.status = status
        encoded = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        encoded += self._standard_headers()
        await self.send({"type": "http.response.start", "status": status, "headers": encoded})
        method = self.scope["method"]
        HTTP_REQUESTS.labels(route=self.route, method=method, status=str(status)).inc()
        HTTP_LATENCY.labels(route=self.route, method=method).observe(time.perf_counter() - self.started)

    async def write(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self, data: bytes = b"") -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": False})

    def _standard_headers(self) -> list[tuple[bytes, bytes]]:
        """What Django's request-id, security and clickjacking middleware add to every answer."""
        headers = [(b"x-request-id", self.context.request_id.encode())]
        if settings.SECURE_CONTENT_TYPE_NOSNIFF:
            headers.append((b"x-content-type-options", b"nosniff"))
        if settings.SECURE_REFERRER_POLICY:
            headers.append((b"referrer-policy", str(settings.SECURE_REFERRER_POLICY).encode()))
        if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
            headers.append(
                (b"cross-origin-opener-policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode())
            )
        headers.append((b"x-frame-options", settings.X_FRAME_OPTIONS.encode()))
        if self.secure and settings.SECURE_HSTS_SECONDS:
            value = f"max-age={settings.SECURE_HSTS_SECONDS}"
            if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
                value += "; includeSubDomains"
            if settings.SECURE_HSTS_PRELOAD:
                value += "; preload"
            headers.append((b"strict-transport-security", value.encode()))
        return headers
