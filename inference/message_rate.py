"""A per-connection message budget: a token bucket that tells a burst from a flood."""

import time
from enum import Enum


class Verdict(Enum):
    ACCEPT = "accept"
    # Over budget: answer with an error, keep the connection.
    REFUSE = "refuse"
    # Kept sending far past the budget: close the connection.
    FLOOD = "flood"


class MessageBudget:
    """`per_window` messages per `window_seconds`, refilled continuously.

    Messages refused in a row are counted; a whole window's budget of them is a flood.
    """

    def __init__(self, *, per_window: int, window_seconds: float) -> None:
        self._capacity = float(max(1, per_window))
        self._refill_per_second = self._capacity / max(window_seconds, 0.001)
        self._tokens = self._capacity
        self._updated = time.monotonic()
        self._refused_in_a_row = 0

    def spend(self) -> Verdict:
        now = time.monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._refill_per_second)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            self._refused_in_a_row = 0
            return Verdict.ACCEPT
        self._refused_in_a_row += 1
        return Verdict.FLOOD if self._refused_in_a_row >= self._capacity else Verdict.REFUSE
