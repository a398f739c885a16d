"""Admission: may this caller run this chat now, and what does it hold while it runs.

What serves the request (the model, its route, its limits) and the caller's quota policies
come from this process's caches (gatehouse.local_cache); the chat slot and every quota limit
are then taken together in one step (accounts.services.chat_quotas). The event loop tries
the whole decision from the caches first and pays one thread hop for the database only on a
miss.

Failure mode: every refusal is a `ChatRefused`; refusals that are policy decisions (no access,
no such model, over quota, a prompt far beyond the context) are audited first. Nothing is held
after a refusal, nor after the caller left mid-admission (what the script took goes back as
soon as it answers).
"""

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from accounts.models import ApiKey, User
from accounts.principal import Principal
from accounts.quotas.plan import QuotaPlan, quota_plan_for
from accounts.selectors import user_team_ids
from accounts.services.chat_quotas import ChatHold, quota_chat_admit_async, quota_chat_finish_async
from accounts.services.quotas import QuotaRefused, SpendAsk
from gatehouse.database_calls import cached_or_reloaded, database_sync
from guardrails.rules import Guard, guard_for
from inference.chat.arrivals import ChatArrival, chat_arrival_begin, chat_arrival_end
from inference.chat.guarding import chat_frame_guarded, guard_redactions_record
from inference.chat.refusal import ChatRefused
from inference.chat_slots import chat_slot_for
from inference.engines.base import ChatFeatures
from inference.protocol import ChatFrame
from inference.services.chat import chat_prepare, chat_refusal_record, chat_token_estimate
from inference.services.chat_plan import ChatPlan, ChatRejected


@dataclass
class ChatAdmitted:
    """An admitted chat: who asked, what serves it, and what it holds until its outcome."""

    user: User
    api_key: ApiKey | None
    plan: ChatPlan
    hold: ChatHold
    messages: list[dict[str, Any]]
    request_id: str
    client_ip: str | None
    channel: str
    generation_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # Wall-clock time (epoch seconds) it was admitted: latency is counted from here.
    admitted_at: float = field(default_factory=time.time)
    # Where its exchange is stored: a new conversation, named for this request by the /v1 door
    # (the websocket door names its conversations itself, new or continued).
    conversation_id: str | None = None
    # Tools or structured outputs, for the remote version that serves them.
    features: ChatFeatures | None = None
    # The messages are inputs to embed (/v1/embeddings), not a conversation.
    embedding: bool = False
    # Who asked, and what, as admitted: a fallback to another model is admitted from them.
    principal: Principal | None = None
    frame: ChatFrame | None = None
    # The model asked for, where this chat is its fallback (that model could not answer).
    fallback_from: str | None = None
    # The guardrails it is held to (its answer is redacted by them as it is written).
    guard: Guard | None = None
    # Counted among this process's chats for its model arriving together, until it is served
    # (`inference.chat.arrivals`).
    arrival: ChatArrival | None = None


@dataclass(frozen=True)
class _Decided:
    plan: ChatPlan
    quota_plan: QuotaPlan
    guard: Guard | None


def _decide(*, user: User, api_key: ApiKey | None, frame: ChatFrame, sticky_key: str) -> _Decided:
    plan = chat_prepare(user=user, frame=frame, sticky_key=sticky_key, api_key=api_key)
    assert plan.version is not None  # noqa: S101 - chat_prepare puts it in every plan
    model_id = plan.version.model_id
    return _Decided(
        plan=plan,
        quota_plan=quota_plan_for(user=user, api_key=api_key, model_id=model_id),
        guard=guard_for(model_id=model_id, team_ids=user_team_ids(user=user)),
    )


def _spend_ask(plan: ChatPlan, token_estimate: int) -> SpendAsk:
    """The most the chat can cost at its version's prices: its prompt's estimate at the input
    price, `max_tokens` at the output price."""
    assert plan.version is not None  # noqa: S101 - chat_prepare puts it in every plan
    prices = plan.version.prices
    answer = plan.params.max_tokens
    units = prices.cost_units(prompt_tokens=max(0, token_estimate - answer), completion_tokens=answer)
    return SpendAsk(units=units, prices=prices)


async def chat_admit(
    *,
    principal: Principal,
    frame: ChatFrame,
    request_id: str,
    client_ip: str | None,
    channel: str,
    sticky_key: str | None = None,
    fallback_from: str | None = None,
) -> ChatAdmitted:
    """Decide and admit one chat, or raise `ChatRefused` (audited where it is a policy decision).

    `sticky_key` keeps requests that share it on one version while a canary runs (a
    conversation's); by default each request is its own. `fallback_from` names the model
    this one stands in for (`inference.chat.fallback`).

    From here until it is served (or refused), the chat counts among its model's arrivals
    (`inference.chat.arrivals`).
    """
    arrival = chat_arrival_begin(model_name=frame.model)
    try:
        admitted = await _admitted(
            principal=principal,
            frame=frame,
            request_id=request_id,
            client_ip=client_ip,
            channel=channel,
            sticky_key=sticky_key,
            fallback_from=fallback_from,
        )
    except BaseException:
        chat_arrival_end(arrival)
        raise
    admitted.arrival = arrival
    return admitted


async def _admitted(
    *,
    principal: Principal,
    frame: ChatFrame,
    request_id: str,
    client_ip: str | None,
    channel: str,
    sticky_key: str | None,
    fallback_from: str | None,
) -> ChatAdmitted:
    user, api_key = principal.user, principal.api_key
    sticky_key = sticky_key or f"{user.pk}:{request_id}"
    try:
        decided = await cached_or_reloaded(
            _decide, user=user, api_key=api_key, frame=frame, sticky_key=sticky_key
        )
        guarded, redacted = (
            chat_frame_guarded(frame, decided.guard) if decided.guard is not None else (frame, Counter[str]())
        )
    except ChatRejected as rejected:
        refused = ChatRefused.from_rejected(rejected)
        await _refusal_record(user=user, api_key=api_key, channel=channel, model=frame.model, refused=refused)
        raise refused from None
    except ChatRefused as blocked:  # a guardrail's
        await _refusal_record(user=user, api_key=api_key, channel=channel, model=frame.model, refused=blocked)
        raise
    plan, quota_plan = decided.plan, decided.quota_plan
    generation_id = uuid.uuid4().hex
    if decided.guard is not None and redacted:
        # Recorded before anything is held: a record that cannot be written holds nothing.
        await guard_redactions_record(
            user=user,
            api_key=api_key,
            guard=decided.guard,
            direction="request",
            redacted=redacted,
            model=plan.model_name,
            generation_id=generation_id,
        )
    token_estimate = chat_token_estimate(messages=guarded.messages, max_tokens=plan.params.max_tokens)
    admitting = asyncio.ensure_future(
        quota_chat_admit_async(
            user=user,
            api_key=api_key,
            plan=quota_plan,
            token_estimate=token_estimate,
            spend=_spend_ask(plan, token_estimate),
            lease_seconds=plan.params.max_seconds or settings.GATEHOUSE_GENERATION_START_TIMEOUT,
            slot=chat_slot_for(user_id=user.pk, limit=settings.GATEHOUSE_MAX_CONCURRENT_CHATS_PER_USER),
        )
    )
    try:
        hold = await asyncio.shield(admitting)
    except asyncio.CancelledError:
        # The caller left while the script ran: what it took goes back once it has answered,
        # rather than when its leases run out.
        admitting.add_done_callback(_abandoned_hold_give_back)
        raise
    except QuotaRefused as quota_refused:
        refused = ChatRefused.from_quota(quota_refused)
        await _refusal_record(user=user, api_key=api_key, channel=channel, model=frame.model, refused=refused)
        raise refused from None
    return ChatAdmitted(
        generation_id=generation_id,
        user=user,
        api_key=api_key,
        plan=plan,
        hold=hold,
        messages=_job_messages(guarded, plan),
        request_id=request_id,
        client_ip=client_ip,
        channel=channel,
        features=guarded.features,
        embedding=frame.embedding,
        principal=principal,
        frame=frame,  # as asked: a fallback model's guard checks it anew
        fallback_from=fallback_from,
        guard=decided.guard,
    )


def _job_messages(frame: ChatFrame, plan: ChatPlan) -> list[dict[str, Any]]:
    """The messages the model is given: a local version offered tools renders the calls and
    results its template shows; otherwise role and content (a remote one gets the features)."""
    plain = [{"role": message.role, "content": message.content} for message in frame.messages]
    if frame.features is None or frame.features.messages is None or not plan.tool_call_format:
        return plain
    # The verbatim and the plain messages correspond one to one (inference.api.chat_features).
    return [
        _template_message(said, verbatim)
        for said, verbatim in zip(plain, frame.features.messages, strict=True)
    ]


def _template_message(said: dict[str, Any], verbatim: dict[str, Any]) -> dict[str, Any]:
    if verbatim.get("role") == "tool":
        return {"role": "tool", "content": verbatim["content"], "tool_call_id": verbatim["tool_call_id"]}
    if verbatim.get("tool_calls"):
        return {
            "role": "assistant",
            "content": verbatim.get("content") or "",
            "tool_calls": verbatim["tool_calls"],
        }
    return said


# Give-backs of holds whose callers left, kept until done (the loop holds tasks weakly).
_giving_back: set["asyncio.Task[None]"] = set()


def _abandoned_hold_give_back(admitting: "asyncio.Future[ChatHold]") -> None:
    if admitting.cancelled() or admitting.exception() is not None:
        return  # nothing was taken
    task = asyncio.ensure_future(quota_chat_finish_async(hold=admitting.result()))
    _giving_back.add(task)
    task.add_done_callback(_giving_back.discard)


async def _refusal_record(
    *, user: User, api_key: ApiKey | None, channel: str, model: str, refused: ChatRefused
) -> None:
    await database_sync(chat_refusal_record)(
        user=user,
        api_key=api_key,
        channel=channel,
        model_name=model,
        code=refused.code,
        reason=refused.message,
    )
