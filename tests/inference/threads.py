"""Running calls on threads of their own, released together (to make them share batches)."""

import threading
from collections.abc import Callable


def concurrently(calls: list[Callable[[], object]]) -> list[object]:
    """Run each call on its own thread, all released at once; results (or errors) in order."""
    results: list[object] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = calls[index]()
        except Exception as exc:  # noqa: BLE001 - handed back to the test to assert on
            results[index] = exc

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results
