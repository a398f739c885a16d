"""`POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings` and `/v1/responses`
through Django: DRF views over the doors.

Production serves bearer-authenticated JSON requests on the ASGI route in front of Django
(`inference.chat.asgi`); this view serves the rest (a console session, say) and the test
client, through DRF's authentication and permissions. Both answer from the same door,
`inference.chat.http`: this view only turns its answer into a Django response.
"""

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

from adrf.views import APIView
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request

from accounts.authentication import request_client_ip, request_principal
from audit.context import request_context_current, request_id_new
from gatehouse.json_parsing import SafeJSONParser
from inference.api.serializers import (
    ChatCompletionRequestSerializer,
    ChatCompletionSerializer,
    EmbeddingListSerializer,
    EmbeddingRequestSerializer,
    ResponseRequestSerializer,
    ResponseSerializer,
    TextCompletionRequestSerializer,
    TextCompletionSerializer,
)
from inference.chat.embeddings_http import embeddings_serve
from inference.chat.http import chat_completions_serve, responses_serve, text_completions_serve

_END = object()


class ClosingStreamingResponse(StreamingHttpResponse):
    """A streaming response whose source generator is closed as soon as the client hangs up.

    Django's ASGI handler closes the iterator it takes from `__aiter__` when the client
    disconnects, but the base class hands it a wrapper that does not close the view's own
    generator: that one lingered until garbage collection, and the chat ran on. Here the
    wrapper closes its source, so the generator's `finally` (cancel the chat) runs then.
    """

    def __init__(self, source: AsyncGenerator[bytes], **kwargs: Any) -> None:
        super().__init__(source, **kwargs)
        self._source = source

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._closing_iterator()

    async def _closing_iterator(self) -> AsyncIterator[bytes]:
        async with aclosing(self._source) as parts:
            async for part in parts:
                yield self.make_bytes(part)


class _QueuedResponder:
    """The door's answer, handed over a queue to the Django response that sends it."""

    def __init__(self) -> None:
        self.head: asyncio.Future[tuple[int, list[tuple[str, str]]]] = (
            asyncio.get_running_loop().create_future()
        )
        self.parts: asyncio.Queue[Any] = asyncio.Queue()

    async def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.head.set_result((status, headers))

    async def write(self, data: bytes) -> None:
        await self.parts.put(data)

    async def end(self, data: bytes = b"") -> None:
        if data:
            await self.parts.put(data)
        await self.parts.put(_END)

    async def body(self) -> bytes:
        parts = []
        while (part := await self.parts.get()) is not _END:
            parts.append(part)
        return b"".join(parts)


class _DoorView(APIView):  # type: ignore[misc]
    """A view over one of the door's serve functions. Bodies are JSON only (anything else is a
    415), as OpenAI's API takes them."""

    required_scope = "chat"
    parser_classes = [SafeJSONParser]
    serve: Callable[..., Awaitable[None]]

    async def _answer(self, request: Request) -> HttpResponseBase:
        context = request_context_current()
        responder = _QueuedResponder()
        serving = asyncio.ensure_future(
            type(self).serve(
                principal=request_principal(request),
                data=request.data,
                request_id=context.request_id if context else request_id_new(),
                client_ip=request_client_ip(request),
                responder=responder,
            )
        )
        waiting: list[asyncio.Future[Any]] = [serving, responder.head]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if not responder.head.done():
            serving.result()  # it ended without answering: raise what it raised
        status, headers = responder.head.result()
        response: HttpResponseBase
        if dict(headers).get("Content-Type") == "text/event-stream":
            response = ClosingStreamingResponse(_streamed(serving, responder), status=status)
        else:
            response = HttpResponse(await responder.body(), status=status)
            await serving
        for name, value in headers:
            response[name] = value
        return response


class ChatCompletionView(_DoorView):
    serve = staticmethod(chat_completions_serve)

    @extend_schema(
        operation_id="createChatCompletion",
        request=ChatCompletionRequestSerializer,
        responses={200: ChatCompletionSerializer},
        description=(
            "OpenAI-compatible chat completion. With `stream: true` the answer is a "
            "`text/event-stream` of `chat.completion.chunk` objects ending with `data: [DONE]`."
        ),
    )
    async def post(self, request: Request) -> HttpResponseBase:
        return await self._answer(request)


class TextCompletionView(_DoorView):
    serve = staticmethod(text_completions_serve)

    @extend_schema(
        operation_id="createCompletion",
        request=TextCompletionRequestSerializer,
        responses={200: TextCompletionSerializer},
        description=(
            "OpenAI-compatible (legacy) text completion: the prompt is continued as it is, without "
            "the chat template. With `stream: true` the answer is a `text/event-stream` of "
            "`text_completion` objects ending with `data: [DONE]`."
        ),
    )
    async def post(self, request: Request) -> HttpResponseBase:
        return await self._answer(request)


async def _streamed(serving: "asyncio.Future[None]", responder: _QueuedResponder) -> AsyncGenerator[bytes]:
    """The stream's parts as the door writes them; a client that hangs up cancels the chat."""
    try:
        while (part := await responder.parts.get()) is not _END:
            yield part
        await serving
    finally:
        if not serving.done():
            serving.cancel()  # the chat records itself as cancelled


class EmbeddingView(_DoorView):
    serve = staticmethod(embeddings_serve)

    @extend_schema(
        operation_id="createEmbedding",
        request=EmbeddingRequestSerializer,
        responses={200: EmbeddingListSerializer},
        description=(
            "OpenAI-compatible embeddings: one vector per input, from a model of the embedding kind "
            "(a chat model answers 400). Charged by the inputs' tokens."
        ),
    )
    async def post(self, request: Request) -> HttpResponseBase:
        return await self._answer(request)


class ResponsesView(_DoorView):
    serve = staticmethod(responses_serve)

    @extend_schema(
        operation_id="createResponse",
        request=ResponseRequestSerializer,
        responses={200: ResponseSerializer},
        description=(
            "OpenAI-compatible Responses API, stateless (nothing is stored: store must be false). "
            "With `stream: true` the answer is a `text/event-stream` of typed events, "
            "`response.created` first and `response.completed` (or `response.incomplete`) last."
        ),
    )
    async def post(self, request: Request) -> HttpResponseBase:
        return await self._answer(request)
