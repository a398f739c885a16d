"""What a quota ledger does, whichever store keeps the counters.

A counter has a key (the caller puts the window in it, e.g. `tokens:day:user:5:20261121`),
a limit and a lifetime (the end of its window). `reserve` adds an amount to several
counters at once, or to none if any would pass its limit. The reservation is a lease:
`settle` replaces it with the real amount, `release` gives it back, and a lease nobody
settles or releases (its worker died) is given back once it expires, the next time its
counter is reserved from.
"""

import uuid
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class CounterSpec:
    key: str
    limit: int
    # Seconds the counter lives: to the end of its window (and a little beyond).
    ttl_seconds: int


@dataclass(frozen=True)
class Reservation:
    counters: tuple[CounterSpec, ...]
    amount: int
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


class QuotaExceeded(Exception):
    """Reserving would pass a counter's limit; nothing was reserved."""

    def __init__(self, *, key: str, limit: int, used: int) -> None:
        super().__init__(f"{key}: {used} of {limit} used")
        self.key = key
        self.limit = limit
        self.used = used


class LedgerUnavailable(Exception):
    """The counters' store cannot be reached: callers fail closed (or open, where allowed)."""


class QuotaLedger(Protocol):
    def reserve(self, *, counters: list[CounterSpec], amount: int, lease_seconds: float) -> Reservation:
        """Add `amount` to every counter, or raise QuotaExceeded naming the first that would overflow."""
        ...

    def settle(self, *, reservation: Reservation, actual: int) -> None:
        """Replace the reserved amount with what was really used (charged even past an expired lease)."""
        ...

    def release(self, *, reservation: Reservation) -> None:
        """Give the whole reservation back (error, cancel before any token, refusal downstream)."""
        ...

    def used(self, *, key: str) -> int:
        """What the counter holds now, leases included (0 for one never used)."""
        ...
