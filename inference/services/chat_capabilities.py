"""What a model can be asked: its kind (chat or embedding), tools and structured outputs by
backend, and for an embedding request the plan (each input within the context)."""

from typing import Any

from django.conf import settings

from inference.engines.base import ChatFeatures, GenerationParams
from inference.engines.loader import version_max_bytes_per_token
from inference.engines.prompt_bound import prompt_byte_limit
from inference.models import Model, ModelVersion
from inference.protocol import ChatFrame
from inference.services.chat_plan import ChatPlan, ChatRejected

_NO_PARAMETERS = {"type": "object", "properties": {}, "additionalProperties": False}


def model_kind_check(*, model: Model, embedding: bool) -> None:
    """Chats and text completions go to chat models, embeddings to embedding models."""
    if embedding and model.kind != Model.Kind.EMBEDDING:
        raise ChatRejected(
            f"Model '{model.name}' is a chat model; it does not make embeddings.", code="invalid"
        )
    if not embedding and model.kind == Model.Kind.EMBEDDING:
        raise ChatRejected(
            f"Model '{model.name}' is an embedding model; ask it at /v1/embeddings.", code="invalid"
        )


def embedding_plan(*, model: Model, version: ModelVersion, frame: ChatFrame) -> ChatPlan:
    """Each input must fit the context alone; nothing is generated (max_tokens is moot)."""
    limit = prompt_byte_limit(
        context_length=version.context_length,
        max_tokens=0,
        max_bytes_per_token=version_max_bytes_per_token(version=version),
    )
    for index, message in enumerate(frame.messages):
        size = len(message.content.encode())
        if size > limit:
            raise ChatRejected(
                f"input[{index}] is {size} bytes; this model's context of {version.context_length} tokens "
                f"cannot hold more than {limit} bytes of one input. Shorten it.",
                code="invalid",
                detail_code="context_length_exceeded",
            )
    return ChatPlan(
        model_name=model.name,
        version_id=version.pk,
        version_label=version.label,
        params=GenerationParams(
            max_tokens=1, max_seconds=float(model.wall_clock_limit_seconds), dimensions=frame.dimensions
        ),
        remote=version.backend == ModelVersion.Backend.OPENAI_COMPATIBLE,
        version=version,
    )


def chat_features_check(*, model_name: str, version: ModelVersion, features: ChatFeatures) -> None:
    """Tools and structured outputs go only where they are served. A remote version called from
    the web process is passed both (a worker's call would drop them); a local one decodes
    structured outputs under their grammar, and calls tools if it has a tool-call format."""
    remote = version.backend == ModelVersion.Backend.OPENAI_COMPATIBLE
    if remote and settings.GATEHOUSE_REMOTE_GENERATION == "web":
        return
    if remote:
        refused, why = _feature_kinds(features), "is called by a worker"
    else:
        calls_tools = bool(version.tool_call_format)
        refused = [kind for kind in _feature_kinds(features) if kind == "tools" and not calls_tools]
        why = "has no tool-call format"
    if refused:
        raise ChatRejected(
            f"Model '{model_name}' does not support {' and '.join(refused)}: its version {version.label} {why}.",
            code="invalid",
        )


def logprobs_check(*, model_name: str, version: ModelVersion, tools_offered: bool) -> None:
    """Log probabilities come from a local version's own scores, or from a remote version
    called from the web process (passed through). A worker's remote call does not read them,
    and a local version's tool calls are read out of its text, which leaves no tokens to
    match them with: both are refused."""
    remote = version.backend == ModelVersion.Backend.OPENAI_COMPATIBLE
    if remote and settings.GATEHOUSE_REMOTE_GENERATION != "web":
        why = "is called by a worker"
    elif not remote and tools_offered:
        why = "reads tool calls out of its text; ask for logprobs without tools"
    else:
        return
    raise ChatRejected(
        f"Model '{model_name}' cannot return logprobs here: its version {version.label} {why}.",
        code="invalid",
    )


def local_tools_plan(
    *, version: ModelVersion, features: ChatFeatures | None
) -> tuple[list[dict[str, Any]] | None, Any]:
    """For a local version: the tools its template offers, and what its output must be (a call
    to one of them when the request requires one, else the structured output asked for)."""
    if features is None:
        return None, None
    response_format = features.fields.get("response_format")
    choice = features.fields.get("tool_choice", "auto")
    tools = features.fields.get("tools") if choice != "none" else None
    if not tools or choice == "auto":
        return tools, response_format
    offered = [tool["function"] for tool in tools]
    if isinstance(choice, dict):
        offered = [function for function in offered if function["name"] == choice["function"]["name"]]
    calls = [
        {
            "type": "object",
            "properties": {
                "name": {"const": function["name"]},
                # A function without parameters takes none, as OpenAI reads it.
                "arguments": function.get("parameters") or _NO_PARAMETERS,
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for function in offered
    ]
    schema = calls[0] if len(calls) == 1 else {"anyOf": calls}
    return tools, {"type": "tool_call", "format": version.tool_call_format, "schema": schema}


def _feature_kinds(features: ChatFeatures) -> list[str]:
    kinds = []
    if features.tool_names or features.messages is not None:
        kinds.append("tools")
    if "response_format" in features.fields:
        kinds.append("response_format")
    return kinds
