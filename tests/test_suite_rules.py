"""Rules the test suite keeps about itself, and its shared helpers.

No timed assertions: a bound on how long something took flakes on a loaded machine. Tests
assert order and outcome instead (the client was told before the upstream answered; the
circuit opened after N failures), and time that must pass is advanced by patching the clock.
Figures written as artifacts are fine; asserting on them is not.
"""

import ast
import re
from pathlib import Path

import pytest
from channels.db import database_sync_to_async

from audit.context import RequestContext, request_context_bound
from audit.models import AuditEvent
from audit.services import audit_event_record
from tests.waiting import completed_audit_event, completed_audit_event_for, eventually

TESTS = Path(__file__).resolve().parent

# Clock readings: time.monotonic(), time.perf_counter(), time.time(), perf_counter(), loop.time().
_CLOCKS = {"monotonic", "perf_counter", "time", "monotonic_ns", "perf_counter_ns", "time_ns"}
# Names and figure keys that stand for a duration.
_DURATION_NAME = re.compile(r"(?:^|_)(?:elapsed|waited|took|duration|latency)(?:_|$)", re.IGNORECASE)
_DURATION_KEY = re.compile(r"(?:_ms|_seconds|latency|elapsed|duration|took)$", re.IGNORECASE)
_ORDERING = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)


def _is_clock(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call) or node.args:
        return False
    function = node.func
    if isinstance(function, ast.Name):
        return function.id in ("monotonic", "perf_counter")
    return isinstance(function, ast.Attribute) and function.attr in _CLOCKS


def _is_clock_difference(node: ast.AST) -> bool:
    """`clock() - start`: a duration measured while the test ran."""
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub) and _is_clock(node.left)


def _holds_duration(node: ast.AST, names: set[str]) -> bool:
    for part in ast.walk(node):
        if _is_clock_difference(part):
            return True
        if isinstance(part, ast.Name) and (part.id in names or _DURATION_NAME.search(part.id)):
            return True
        if (
            isinstance(part, ast.Subscript)
            and isinstance(part.slice, ast.Constant)
            and isinstance(part.slice.value, str)
            and _DURATION_KEY.search(part.slice.value)
        ):
            return True
    return False


def _durations_returned(tree: ast.AST) -> dict[str, set[int]]:
    """Functions of the module that return a clock difference, and at which tuple positions."""
    found: dict[str, set[int]] = {}
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Return) and node.value is not None:
                values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
                for position, value in enumerate(values):
                    if any(_is_clock_difference(part) for part in ast.walk(value)):
                        found.setdefault(function.name, set()).add(position)
    return found


def _called_names(node: ast.AST) -> set[str]:
    return {
        part.func.id
        for part in ast.walk(node)
        if isinstance(part, ast.Call) and isinstance(part.func, ast.Name)
    }


def _duration_names(tree: ast.AST) -> set[str]:
    """Variables bound to a duration: `waited = clock() - start`, or unpacked from a
    function of the module that returns one (`frames, waited = await _chat(...)`)."""
    returned = _durations_returned(tree)
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            if isinstance(target, ast.Name) and any(_is_clock_difference(p) for p in ast.walk(node.value)):
                names.add(target.id)
            if isinstance(target, ast.Tuple):
                positions = set().union(*(returned.get(name, set()) for name in _called_names(node.value)))
                names.update(
                    element.id
                    for position, element in enumerate(target.elts)
                    if position in positions and isinstance(element, ast.Name)
                )
    return names


def timed_assertions(source: str) -> list[int]:
    """Line numbers of the assertions that bound a duration (`assert waited < 5`,
    `assert time.monotonic() - started < 3`, `assert figures["p50_ms"] > other["p50_ms"]`)."""
    tree = ast.parse(source)
    names = _duration_names(tree)
    lines = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare)):
            continue
        if not any(isinstance(op, _ORDERING) for op in node.test.ops):
            continue
        if _holds_duration(node.test, names):
            lines.append(node.lineno)
    return sorted(lines)


def test_no_test_asserts_how_long_something_took() -> None:
    found = [
        f"{path.relative_to(TESTS.parent)}:{line}"
        for path in sorted(TESTS.rglob("*.py"))
        for line in timed_assertions(path.read_text())
    ]
    assert not found, "timed assertions (assert order and outcome instead): " + ", ".join(found)


# The forms the suite once held, each as it was written.
TIMED_FORMS = {
    "a duration measured in the assertion": """
started = time.monotonic()
run()
assert time.monotonic() - started < 3
""",
    "a duration bound to a name": """
killed_at = time.monotonic()
wait()
waited = time.monotonic() - killed_at
assert waited < STALL_TIMEOUT + 2
""",
    "a duration returned by a helper": """
async def _chat(token, client_id):
    started = time.monotonic()
    frames = await frames_until_end(communicator, client_id)
    return frames, time.monotonic() - started

async def test_it():
    frames, waited = await _chat(token, "hung")
    assert waited < READ_TIMEOUT + 5, f"the client waited {waited:.1f}s"
""",
    "a duration returned through asyncio.run": """
def test_it():
    async def run():
        lost_at = time.monotonic()
        ended = await asyncio.gather(*clients)
        return list(ended), time.monotonic() - lost_at

    ended, waited = asyncio.run(run())
    assert waited < PROMPTLY_SECONDS, f"clients heard after {waited:.1f}s: {ended}"
""",
    "two latencies compared": """
assert goals["P1"]["details"]["gateway_p50_ms"] > goals["P1"]["details"]["direct_p50_ms"] > 0
""",
    "a perf_counter duration": """
t0 = perf_counter()
work()
elapsed = perf_counter() - t0
assert elapsed <= 0.5
""",
    "a duration named so": "assert took >= 1\n",
}


@pytest.mark.parametrize("form", TIMED_FORMS, ids=list(TIMED_FORMS))
def test_the_rule_catches_each_timed_form_the_suite_held(form: str) -> None:
    assert timed_assertions(TIMED_FORMS[form]), form


UNTIMED_FORMS = {
    "a deadline that bounds a wait": """
deadline = time.monotonic() + 60
while not ready():
    assert time.monotonic() < deadline, "not ready"
""",
    "a figure that is recorded, not asserted": """
waited = time.monotonic() - lost_at
figures_write("lost", {"clients_told_after_s": round(waited, 3)})
""",
    "a count compared": "assert len(upstream.requests) < 3\n",
    "a rate that is positive": 'assert min(goals["P2"]["details"]["gateway_requests_per_s"]) > 0\n',
}


@pytest.mark.parametrize("form", UNTIMED_FORMS, ids=list(UNTIMED_FORMS))
def test_the_rule_leaves_bounded_waits_and_recorded_figures_alone(form: str) -> None:
    assert timed_assertions(UNTIMED_FORMS[form]) == [], form


def _completed(request_id: str) -> AuditEvent:
    with request_context_bound(RequestContext(request_id=request_id, client_ip=None)):
        return audit_event_record(action="inference.completed", actor_display="system")


@pytest.mark.django_db(transaction=True)
async def test_waiting_for_a_completed_record_finds_the_tests_own() -> None:
    """Another generation's record (a test before, writing late) is not taken for this one's."""
    mine = await database_sync_to_async(_completed)("mine")
    await database_sync_to_async(_completed)("someone-else")
    assert (await eventually(completed_audit_event_for(request_id="mine"))).pk == mine.pk
    with pytest.raises(AssertionError, match=r"more than one inference\.completed record"):
        await database_sync_to_async(completed_audit_event)()
