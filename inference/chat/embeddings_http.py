"""The `/v1/embeddings` door: parse, run through the chat pipeline (admission, run, outcome),
answer OpenAI's list of embeddings.

An embedding request is admitted, charged, audited and counted as a chat is: the inputs are
its messages, their tokens what it costs, and nothing is generated.
"""

import base64
import struct
from typing import Any

import orjson

from accounts.principal import Principal
from inference.api.embedding_request import embedding_request_parse
from inference.chat.admission import chat_admit
from inference.chat.http import Responder, error_respond, refusal_respond, request_read
from inference.chat.refusal import ChatRefused
from inference.chat.run import chat_run


async def _nothing(*_: Any) -> None:
    """Embeddings have no stream to start nor texts to pass on."""


def _vector(values: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":  # OpenAI's: little-endian float32s
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
    return values


async def embeddings_serve(
    *, principal: Principal, data: Any, request_id: str, client_ip: str | None, responder: Responder
) -> None:
    """Answer one embeddings request from an authenticated caller; never raises a refusal."""
    request = await request_read(
        principal=principal,
        data=data,
        request_id=request_id,
        responder=responder,
        parse=embedding_request_parse,
    )
    if request is None:
        return
    try:
        admitted = await chat_admit(
            principal=principal,
            frame=request.frame,
            request_id=request_id,
            client_ip=client_ip,
            channel="api",
        )
        end = await chat_run(admitted, stream=False, on_started=_nothing, on_texts=_nothing)
    except ChatRefused as refused:
        await refusal_respond(responder, refused)
        return
    if end.vectors is None:  # a version that answered as a chat model would
        await error_respond(
            responder, status=502, message="The model did not answer with embeddings.", code="bad_upstream"
        )
        return
    answer = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": _vector(vector, request.encoding_format)}
            for index, vector in enumerate(end.vectors)
        ],
        "model": admitted.plan.model_name,
        "usage": {"prompt_tokens": end.prompt_tokens, "total_tokens": end.prompt_tokens},
    }
    await responder.start(200, [("Content-Type", "application/json"), *admitted.hold.quota.headers.items()])
    await responder.end(orjson.dumps(answer))
