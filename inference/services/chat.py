"""The chat lifecycle: deciding what serves a request, and auditing how it ended."""

import hashlib
import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from accounts.models import ApiKey, User
from accounts.principal import Principal
from accounts.selectors import user_team_ids
from accounts.services.quotas import QuotaAdmission, quota_release
from accounts.services.usage import usage_row, usage_row_enqueue
from audit.context import RequestContext, request_context_current
from audit.models import AuditEvent
from audit.services import (
    audit_event_finish,
    audit_event_insert,
    audit_event_record,
    audit_event_start,
)
from inference.cancellation import generation_cancel_request
from inference.engines.base import ChatMessage, GenerationParams
from inference.engines.loader import version_max_bytes_per_token
from inference.engines.prompt_bound import messages_bytes, prompt_byte_limit
from inference.models import Model, ModelVersion
from inference.protocol import ChatFrame
from inference.selectors import model_routes_for, model_version_route
from inference.services.chat_capabilities import (
    chat_features_check,
    embedding_plan,
    local_tools_plan,
    logprobs_check,
    model_kind_check,
)
from inference.services.chat_plan import CachePolicy, ChatPlan, ChatRejected
from spend.money import Prices

if TYPE_CHECKING:  # generation imports these services; only the type is needed here
    from inference.generation import GenerationJob

DEFAULT_TEMPERATURE = 0.7
# Tokens a chat template may add per message (role markers, separators), generously.
_TEMPLATE_MARGIN = 16


def chat_prepare(*, user: User, frame: ChatFrame, sticky_key: str, api_key: ApiKey | None = None) -> ChatPlan:
    """Decide what serves a chat request, or say why it cannot run.

    A model the user may not use is "not found", exactly like one that does not exist,
    so the answer does not reveal which models exist; so is one the caller's API key is not
    limited to (a key never reaches past its owner).
    """
    routes = model_routes_for(user=user, name=frame.model)
    if (
        routes is not None
        and api_key is not None
        and api_key.model_ids
        and routes.model.pk not in api_key.model_ids
    ):
        routes = None
    if routes is None:
        raise ChatRejected(
            f"Model '{frame.model}' does not exist or you do not have access to it.", code="not_found"
        )
    model = routes.model
    model_kind_check(model=model, embedding=frame.embedding)
    version = model_version_route(model=model, sticky_key=sticky_key, serving=routes.serving)
    if version is None:
        raise ChatRejected(f"Model '{model.name}' has no version in production.", code="unavailable")
    if frame.embedding:
        return embedding_plan(model=model, version=version, frame=frame)
    max_tokens = frame.max_tokens or min(model.default_max_tokens, model.max_tokens_cap)
    if max_tokens > model.max_tokens_cap:
        raise ChatRejected(
            f"max_tokens is {max_tokens}, above this model's limit of {model.max_tokens_cap}.", code="invalid"
        )
    if frame.choices > model.max_choices:
        raise ChatRejected(
            f"n is {frame.choices}, above this model's limit of {model.max_choices} choices per request.",
            code="invalid",
        )
    _prompt_fit_check(version=version, messages=frame.messages, max_tokens=max_tokens)
    if frame.features is not None:
        chat_features_check(model_name=model.name, version=version, features=frame.features)
    remote = version.backend == ModelVersion.Backend.OPENAI_COMPATIBLE
    tools, output_format = (
        (None, None) if remote else local_tools_plan(version=version, features=frame.features)
    )
    if frame.logprobs is not None:
        logprobs_check(model_name=model.name, version=version, tools_offered=bool(tools))
    params = GenerationParams(
        max_tokens=max_tokens,
        temperature=DEFAULT_TEMPERATURE if frame.temperature is None else frame.temperature,
        top_p=1.0 if frame.top_p is None else frame.top_p,
        stop=frame.stop,
        max_seconds=float(model.wall_clock_limit_seconds),
        # A local version decodes it under its grammar; a remote one is passed the request's.
        response_format=output_format,
        raw_prompt=frame.raw_prompt,
        seed=frame.seed,
        tools=tools,
        logprobs=frame.logprobs,
    )
    return ChatPlan(
        model_name=model.name,
        version_id=version.pk,
        version_label=version.label,
        params=params,
        remote=remote,
        version=version,
        tool_call_format=version.tool_call_format if tools else "",
        fallback_models=tuple(model.fallback_models),
        cache=_cache_policy(model=model, user=user, params=params),
    )


def _cache_policy(*, model: Model, user: User, params: GenerationParams) -> CachePolicy | None:
    """The model's response cache for this request, where it keeps answers and the request is
    deterministic (temperature 0, or a seed): the same request makes the same answer."""
    if not model.response_cache or (params.temperature != 0 and params.seed is None):
        return None
    if model.response_cache_shared:
        scope = "shared"
    else:
        teams = user_team_ids(user=user)
        scope = f"teams:{','.join(map(str, teams))}" if teams else f"user:{user.pk}"
    return CachePolicy(seconds=model.response_cache_seconds, charge=model.response_cache_charge, scope=scope)


def _prompt_fit_check(*, version: ModelVersion, messages: list[ChatMessage], max_tokens: int) -> None:
    """Refuse messages whose bytes alone show they cannot fit the context: before anything
    tokenizes them (that costs time in proportion to their size), and charging nothing."""
    limit = prompt_byte_limit(
        context_length=version.context_length,
        max_tokens=max_tokens,
        max_bytes_per_token=version_max_bytes_per_token(version=version),
    )
    size = messages_bytes(messages)
    if size > limit:
        raise ChatRejected(
            f"The messages are {size} bytes; with max_tokens={max_tokens} this model's context of "
            f"{version.context_length} tokens cannot hold more than {limit} bytes of them. "
            "Shorten the messages.",
            code="invalid",
            detail_code="context_length_exceeded",
        )


def chat_record_outcome(
    *,
    user_id: int,
    api_key_id: int | None,
    version_id: int,
    metadata: dict[str, object],
    failed: bool,
    channel: str = "websocket",
    version: ModelVersion | None = None,
    prices: Prices | None = None,
    started: AuditEvent | None = None,
) -> AuditEvent:
    """Audit one chat once it has ended, whichever way it ended, and buffer its usage record
    (its cost: the tokens in `metadata` at `prices`, those it was admitted at).

    Called where the generation ran (a web-process thread or a Celery worker), before the
    client is told: the record never depends on the channel layer delivering an event. A
    caller that loaded the version (with its model) passes it: one query fewer. One that
    began the record while the model answered (`chat_record_start`, for the same caller and
    version) passes it as `started`: the end then only finishes it, and reads no caller.
    """
    prices = prices or Prices()
    if version is None or version.pk != version_id:
        version = ModelVersion.objects.select_related("model").get(pk=version_id)
    if started is None:
        started = chat_record_start(user_id=user_id, api_key_id=api_key_id, version=version)
    usage_row_enqueue(
        row=chat_usage_row(
            user_id=user_id,
            api_key_id=api_key_id,
            version_id=version_id,
            channel=channel,
            metadata=metadata,
            failed=failed,
            cost=prices.cost(
                prompt_tokens=_tokens(metadata, "prompt_tokens"),
                completion_tokens=_tokens(metadata, "completion_tokens"),
            ),
        )
    )
    return audit_event_insert(
        event=chat_outcome_event_finish(
            started, version=version, failed=failed, channel=channel, metadata=metadata
        )
    )


def chat_record_start(*, user_id: int, api_key_id: int | None, version: ModelVersion) -> AuditEvent:
    """The first half of a chat's audit record (`chat_outcome_event_start`), its caller read
    from the database: made while the model answers, `chat_record_outcome(started=...)` ends it.
    Writes nothing but, the first time a user is audited, their audit subject."""
    user = User.objects.get(pk=user_id)
    api_key = ApiKey.objects.filter(pk=api_key_id).first() if api_key_id else None
    return chat_outcome_event_start(user=user, api_key=api_key, version=version)


def chat_usage_row(
    *,
    user_id: int,
    api_key_id: int | None,
    version_id: int,
    channel: str,
    metadata: dict[str, object],
    failed: bool,
    cost: Decimal,
) -> dict[str, Any]:
    """The usage record of a chat that ended, from its outcome's metadata, and what it cost."""
    return usage_row(
        user_id=user_id,
        api_key_id=api_key_id,
        model_version_id=version_id,
        channel=channel,
        prompt_tokens=_tokens(metadata, "prompt_tokens"),
        completion_tokens=_tokens(metadata, "completion_tokens"),
        cost=cost,
        latency_ms=_number(metadata.get("latency_ms")),
        time_to_first_token_ms=_number(metadata.get("time_to_first_token_ms")),
        outcome=_usage_outcome(failed=failed, finish_reason=metadata.get("finish_reason")),
        request_id=(request_context_current() or RequestContext(request_id="")).request_id,
    )


def chat_outcome_event(
    *,
    user: User,
    api_key: ApiKey | None,
    version: ModelVersion,
    failed: bool,
    channel: str,
    metadata: dict[str, object],
) -> AuditEvent:
    """The audit event of one chat's end (`inference.completed` or `.failed`), built but not
    appended: the caller appends it (`audit.services.audit_event_insert`, or from an event loop
    `audit.appender`). Reads the database only for what is not cached: the caller's audit
    subject, the version's model."""
    started = chat_outcome_event_start(user=user, api_key=api_key, version=version)
    return chat_outcome_event_finish(
        started, version=version, failed=failed, channel=channel, metadata=metadata
    )


def chat_outcome_event_start(*, user: User, api_key: ApiKey | None, version: ModelVersion) -> AuditEvent:
    """`chat_outcome_event`'s first half (`audit.services.audit_event_start`): who ran which
    version, from where; made while the model answers, so that the end pays only the finish."""
    return audit_event_start(**_audit_actor(user=user, api_key=api_key), target=version)


def chat_outcome_event_finish(
    started: AuditEvent, *, version: ModelVersion, failed: bool, channel: str, metadata: dict[str, object]
) -> AuditEvent:
    """`started` (`chat_outcome_event_start`'s, for the same caller and `version`) finished as
    `chat_outcome_event` builds it."""
    return audit_event_finish(
        started,
        action="inference.failed" if failed else "inference.completed",
        outcome=AuditEvent.Outcome.FAILURE if failed else AuditEvent.Outcome.SUCCESS,
        metadata={"channel": channel, "model": version.model.name, "version": version.label, **metadata},
    )


def _audit_actor(*, user: User, api_key: ApiKey | None) -> dict[str, Any]:
    """`audit_event_record` arguments for a chat's caller: the user, and the key if one was used."""
    principal = Principal(user=user, method="api_key" if api_key else "jwt", api_key=api_key)
    return {
        "actor": user,
        "actor_kind": AuditEvent.ActorKind.API_KEY if api_key else None,
        "actor_display": principal.audit_display,
    }


# Refusals that are policy decisions go on the trail. Malformed frames and rate limits do not:
# they say nothing about access, and recording each would let a flood grow the trail.
AUDITED_REFUSALS = frozenset(
    {
        "forbidden",
        "not_found",
        "quota_exceeded",
        "context_length_exceeded",
        "content_blocked",
        "prompt_too_long",
    }
)


def chat_guard_redaction_record(
    *,
    user: User,
    api_key: ApiKey | None,
    policies: list[str],
    direction: str,
    kinds: dict[str, int],
    model_name: str,
    generation_id: str | None = None,
) -> AuditEvent:
    """Audit what a guardrail redacted from a chat's request or answer: the policies, the
    kinds and how many of each, never the text."""
    return audit_event_record(
        action="guardrail.redacted",
        **_audit_actor(user=user, api_key=api_key),
        metadata={
            "direction": direction,
            "model": model_name,
            "policies": policies,
            "kinds": kinds,
            **({"generation_id": generation_id} if generation_id else {}),
        },
    )


def chat_refusal_record(
    *, user: User, api_key: ApiKey | None, channel: str, model_name: str, code: str, reason: str
) -> AuditEvent | None:
    """Audit a chat refused before it ran (no access, no such model, over quota, a prompt far
    beyond the context). `code` is the refusal's `detail_code`."""
    if code not in AUDITED_REFUSALS:
        return None
    return audit_event_record(
        action="inference.refused",
        **_audit_actor(user=user, api_key=api_key),
        outcome=AuditEvent.Outcome.DENIED,
        metadata={"channel": channel, "model": model_name, "code": code, "reason": reason},
    )


def chat_abandon(*, job: "GenerationJob", reason: str) -> AuditEvent:
    """Give up on a generation that cannot end itself: it was never queued, no worker took it,
    or its worker went silent.

    Everything it holds goes back now rather than at lease end: a late worker sees the cancel
    flag, and its quota reservations are released. The record it cannot write is written here.
    """
    generation_cancel_request(generation_id=job.generation_id)
    quota_release(admission=QuotaAdmission.from_payload(job.quota))
    return chat_record_outcome(
        user_id=job.user_id,
        api_key_id=job.api_key_id,
        version_id=job.version_id,
        failed=True,
        channel=job.channel,
        metadata={
            "client_id": job.client_id,
            "generation_id": job.generation_id,
            "code": "unavailable",
            "reason": reason,
            "prompt_sha256": chat_prompt_digest(messages=job.messages),
        },
    )


def chat_prompt_digest(*, messages: list[dict[str, Any]]) -> str:
    """SHA-256 of the messages as sent: the trail can match a prompt someone produces later
    without ever holding its text."""
    canonical = json.dumps(
        [[message.get("role", ""), message.get("content", "")] for message in messages],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def chat_token_estimate(*, messages: list[ChatMessage], max_tokens: int) -> int:
    """An upper bound of the tokens a chat can use, known before its prompt is tokenized.

    Tokenizers spend at least one byte per token (byte-level BPE, SentencePiece with byte
    fallback), so a prompt's bytes bound its tokens; the margin covers each turn's role
    markers in the chat template. The reservation is settled with the real count after.
    """
    prompt_bytes = sum(len(message.content.encode()) + _TEMPLATE_MARGIN for message in messages)
    return prompt_bytes + _TEMPLATE_MARGIN + max_tokens


def _tokens(metadata: dict[str, object], name: str) -> int:
    return int(str(metadata.get(name) or 0))


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _usage_outcome(*, failed: bool, finish_reason: object) -> str:
    if failed:
        return "failed"
    return "cancelled" if finish_reason == "cancelled" else "completed"
