"""Chats for one model that a web process admits at the same time start together.

A web process admits its chats one await at a time. Where several for the same model arrive
together (many clients at one moment, one request's `n` choices), the first is queued while
the others are still being admitted. On an idle continuous batch it would start alone, and each
of the others would join it later with a prefill of its own, their rows padded to each other.
So each job says how many other chats for its model this process was still admitting when it
was queued (`GenerationJob.arriving_with`), and an idle model waits a moment for them
(`inference.engines.continuous`), so that they are prefilled together.

The count is a hint, nothing more: a companion that is refused, answered from the response
cache or taken by another worker costs one bounded wait, never a chat. An arrival that is never
ended (a path that forgot) stops counting after `ARRIVAL_STALE_SECONDS`.

Touched only on the web process's event loop, so it needs no lock.
"""

import time
from dataclasses import dataclass, field

# Admission and dispatch take milliseconds: an arrival older than this was left behind.
ARRIVAL_STALE_SECONDS = 1.0


@dataclass(eq=False)
class ChatArrival:
    """One chat between the start of its admission and its dispatch (or refusal)."""

    model_name: str
    started_at: float = field(default_factory=time.monotonic)
    ended: bool = False
    # Set when it ends: how many other chats for its model were still arriving then.
    companions: int = 0


_arriving: set[ChatArrival] = set()


def chat_arrival_begin(*, model_name: str) -> ChatArrival:
    """Count a chat for `model_name` as arriving, until `chat_arrival_end`."""
    arrival = ChatArrival(model_name=model_name)
    _arriving.add(arrival)
    return arrival


def chat_arrival_end(arrival: ChatArrival | None) -> int:
    """Stop counting `arrival`; returns how many other chats for its model were still arriving
    when it ended: its companions. Ending it again returns the same; None (a chat admitted
    without one) has none."""
    if arrival is None:
        return 0
    if not arrival.ended:
        _arriving.discard(arrival)
        now = time.monotonic()
        for stale in [other for other in _arriving if now - other.started_at > ARRIVAL_STALE_SECONDS]:
            _arriving.discard(stale)
        arrival.ended = True
        arrival.companions = sum(1 for other in _arriving if other.model_name == arrival.model_name)
    return arrival.companions
