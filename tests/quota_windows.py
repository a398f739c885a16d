"""Requests-per-minute quotas count in fixed UTC minutes: a test whose requests must share one
window starts where the rest of the current one outlasts them."""

import time


def quota_minute_fresh_wait(*, room: float = 15.0) -> None:
    """Wait, if need be, so that requests made within `room` seconds fall in one minute window."""
    left = 60 - time.time() % 60
    if left < room:
        time.sleep(left + 0.5)
