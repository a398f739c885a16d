"""Quota enforcement for one request: admit it (reserve), then settle or release.

Requests per minute are counted as they arrive. Concurrent streams take a slot for the
generation's life. Tokens are reserved before generating (an upper bound of the prompt
plus `max_tokens`) and settled with the real count after, or released on failure; a
reservation whose worker died is a lease that expires. Budgets in money work as tokens do:
the most the request can cost at its version's prices is reserved, what it cost is settled.
"""

import functools
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

from django.conf import settings

from accounts.models import ApiKey, QuotaPolicy, User
from accounts.quotas.charge import NOTHING, Charge
from accounts.quotas.ledger import CounterSpec, LedgerUnavailable, QuotaExceeded, QuotaLedger, Reservation
from accounts.quotas.plan import Limit, QuotaPlan, quota_plan_for
from accounts.quotas.sql_ledger import SqlQuotaLedger
from audit.audited_writes import audited_delete, audited_save
from gatehouse.deferred import deferred_until_done
from gatehouse.metrics import QUOTA_REJECTIONS
from spend.money import Prices

# A token reservation or stream slot outlives the longest generation by this much.
LEASE_MARGIN_SECONDS = 60


class QuotaRefused(Exception):
    """The request may not run now. `code` is the protocol's: rate_limited or quota_exceeded."""

    def __init__(self, *, code: str, message: str, retry_after: int | None, status: int = 429) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.status = status


@dataclass
class QuotaAdmission:
    """What a running request holds; JSON-safe, so a worker can settle it."""

    tokens: dict[str, Any] | None = None
    streams: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # The budgets' reservation, in ledger units, and the prices it was reckoned at.
    spend: dict[str, Any] | None = None
    prices: dict[str, str] | None = None

    def charge_units(self, charge: Charge) -> int:
        """What `charge` costs at the admitted prices, in ledger units."""
        return Prices.from_payload(self.prices).cost_units(
            prompt_tokens=charge.prompt_tokens, completion_tokens=charge.completion_tokens
        )

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any] | None) -> "QuotaAdmission":
        return cls(**payload) if payload else cls()


@cache
def quota_ledger() -> QuotaLedger:
    """Redis wherever REDIS_URL is set (shared by every replica), the database otherwise."""
    if settings.REDIS_URL:
        import redis

        from accounts.quotas.redis_ledger import RedisQuotaLedger

        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        return RedisQuotaLedger(client=client)
    return SqlQuotaLedger()


def reservation_payload(reservation: Reservation) -> dict[str, Any]:
    return {
        "id": reservation.id,
        "amount": reservation.amount,
        "counters": [[c.key, c.limit, c.ttl_seconds] for c in reservation.counters],
    }


def _reservation(payload: dict[str, Any]) -> Reservation:
    counters = tuple(CounterSpec(key, limit, ttl) for key, limit, ttl in payload["counters"])
    return Reservation(counters=counters, amount=payload["amount"], id=payload["id"])


def reset_text(seconds: float) -> str:
    """OpenAI's reset format: 1s, 6m0s, 2h3m4s."""
    whole = max(0, int(seconds + 0.999))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _tightest(ledger: QuotaLedger, limits: tuple[Limit, ...]) -> tuple[Limit, int] | None:
    """The limit with the least left, and what is left of it."""
    left = [(limit, limit.spec.limit - ledger.used(key=limit.spec.key)) for limit in limits]
    return min(left, key=lambda pair: pair[1]) if left else None


def _headers(ledger: QuotaLedger, plan: QuotaPlan) -> dict[str, str]:
    """The x-ratelimit-* headers; none when the store cannot say (the request was admitted)."""
    try:
        return _headers_read(ledger, plan)
    except LedgerUnavailable:
        return {}


def _headers_read(ledger: QuotaLedger, plan: QuotaPlan) -> dict[str, str]:
    headers: dict[str, str] = {}
    for kind, limits in (("requests", plan.requests), ("tokens", plan.tokens)):
        tightest = _tightest(ledger, limits)
        if tightest is None:
            continue
        limit, left = tightest
        headers[f"x-ratelimit-limit-{kind}"] = str(limit.spec.limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, left))
        if limit.resets_at is not None:
            headers[f"x-ratelimit-reset-{kind}"] = reset_text(limit.resets_at - plan.now)
    return headers


def quota_refusal(
    plan: QuotaPlan, exceeded: QuotaExceeded, *, code: str, limits: tuple[Limit, ...]
) -> QuotaRefused:
    limit = next(item for item in limits if item.spec.key == exceeded.key)
    retry = int(limit.resets_at - plan.now) + 1 if limit.resets_at is not None else None
    QUOTA_REJECTIONS.labels(code=code).inc()
    if exceeded.key.startswith("spend:"):  # a budget: its label says its amount
        message = f"Budget reached: {plan.label_of(exceeded.key)}."
    else:
        message = f"Limit reached: {plan.label_of(exceeded.key)} ({exceeded.limit})."
    if retry is not None:
        message += f" Try again in {reset_text(retry)}."
    return QuotaRefused(code=code, message=message, retry_after=retry)


def quota_unavailable() -> QuotaRefused:
    return QuotaRefused(
        code="unavailable",
        message="Quotas cannot be checked right now, so the request was not run; try again shortly.",
        retry_after=None,
        status=503,
    )


@dataclass(frozen=True)
class SpendAsk:
    """The most a request can cost, in ledger units, at `prices` (its version's, when admitted):
    what its budgets reserve."""

    units: int = 0
    prices: Prices = field(default_factory=Prices)


def quota_admit(
    *,
    user: User,
    api_key: ApiKey | None,
    token_estimate: int,
    lease_seconds: float,
    plan: QuotaPlan | None = None,
    spend: SpendAsk | None = None,
) -> QuotaAdmission:
    """Count the request and reserve its stream slot, tokens and spend, or raise QuotaRefused.

    `plan` is the caller's (quota_plan_for, with the model asked for: its budgets apply);
    made here without one. Nothing is held after a refusal. With the store down, token quotas
    and budgets fail closed (503) and request-rate limits fail open only where
    GATEHOUSE_RATE_LIMIT_FAIL_OPEN is on.
    """
    plan = plan or quota_plan_for(user=user, api_key=api_key)
    spend = spend or SpendAsk()
    if not (plan.requests or plan.tokens or plan.streams or plan.spend):
        return QuotaAdmission(prices=spend.prices.to_payload())
    ledger = quota_ledger()
    lease = lease_seconds + LEASE_MARGIN_SECONDS
    if plan.requests:
        try:
            # Requests count as they arrive, whatever becomes of them.
            counted = ledger.reserve(
                counters=[limit.spec for limit in plan.requests], amount=1, lease_seconds=lease
            )
            ledger.settle(reservation=counted, actual=1)
        except QuotaExceeded as exceeded:
            raise quota_refusal(plan, exceeded, code="rate_limited", limits=plan.requests) from None
        except LedgerUnavailable:
            if not settings.GATEHOUSE_RATE_LIMIT_FAIL_OPEN:
                raise quota_unavailable() from None
    admission = QuotaAdmission(prices=spend.prices.to_payload())
    held = (
        (plan.streams, 1, "streams"),
        (plan.tokens, token_estimate, "tokens"),
        (plan.spend, spend.units, "spend"),
    )
    try:
        for limits, amount, name in held:
            if limits:
                reservation = ledger.reserve(
                    counters=[limit.spec for limit in limits], amount=amount, lease_seconds=lease
                )
                setattr(admission, name, reservation_payload(reservation))
        admission.headers = _headers(ledger, plan)
    except QuotaExceeded as exceeded:
        quota_release(admission=admission)
        code = "rate_limited" if exceeded.key.startswith("streams:") else "quota_exceeded"
        raise quota_refusal(
            plan, exceeded, code=code, limits=(*plan.streams, *plan.tokens, *plan.spend)
        ) from None
    except LedgerUnavailable:
        # Whatever was reserved before the store went away is a lease: it expires.
        raise quota_unavailable() from None
    return admission


def quota_settle(*, admission: QuotaAdmission, charge: Charge) -> None:
    """The request ended having used `charge`: charge its tokens and its cost, free the
    stream slot.

    With the store unreachable, each step is retried in the background until it is back
    (gatehouse.deferred): the tokens are charged and the slot freed then, not lost. A retry
    after a reply lost in transit could charge twice; a store away longer than the lease
    lets the lease lapse first. Both are logged.
    """
    ledger = quota_ledger()
    settled = (
        (admission.tokens, charge.tokens, "tokens"),
        (admission.spend, admission.charge_units(charge), "units of spend"),
        (admission.streams, 0, "stream slots"),
    )
    for payload, actual, what in settled:
        if not payload:
            continue
        reservation = _reservation(payload)
        deferred_until_done(
            what=f"quota: settle reservation {reservation.id} with {actual} {what}",
            attempt=functools.partial(ledger.settle, reservation=reservation, actual=actual),
            retry_on=(LedgerUnavailable,),
            give_up_after=settings.GATEHOUSE_DEFERRED_GIVE_UP_SECONDS,
        )


def quota_release(*, admission: QuotaAdmission) -> None:
    """The request ended without using anything (refused downstream, failed, never ran)."""
    quota_settle(admission=admission, charge=NOTHING)


_POLICY_FIELDS = (
    "name",
    "user_id",
    "team_id",
    "api_key_id",
    "role_id",
    "requests_per_minute",
    "tokens_per_day",
    "tokens_per_month",
    "concurrent_streams",
)


def _policy_state(policy: QuotaPolicy) -> dict[str, object]:
    return {field: getattr(policy, field) for field in _POLICY_FIELDS}


def quota_policy_save(*, policy: QuotaPolicy, actor: User) -> QuotaPolicy:
    """Create or change a policy (validated: exactly one subject), audited with before and after."""
    return audited_save(instance=policy, actor=actor, action="quota.policy", state=_policy_state)


def quota_policy_delete(*, policy: QuotaPolicy, actor: User) -> None:
    audited_delete(instance=policy, actor=actor, action="quota.policy", state=_policy_state)


def quota_standing(*, user: User, api_key: ApiKey | None) -> list[dict[str, object]]:
    """Every limit the caller is held to, with what is used and left and when it resets.

    Read from the live counters (reservations of running requests included). Budgets in money
    are `spend.selectors.budget_standing`'s.
    """
    plan = quota_plan_for(user=user, api_key=api_key)
    ledger = quota_ledger()
    standing: list[dict[str, object]] = []
    for dimension, limits in (
        ("requests", plan.requests),
        ("tokens", plan.tokens),
        ("streams", plan.streams),
    ):
        for limit in limits:
            used = ledger.used(key=limit.spec.key)
            standing.append(
                {
                    "limit": limit.label,
                    "dimension": dimension,
                    "max": limit.spec.limit,
                    "used": used,
                    "remaining": max(0, limit.spec.limit - used),
                    "resets_at": limit.resets_at,
                }
            )
    return standing
