"""PostgreSQL's connection dropped at the moment of COMMIT: nothing half-written, a 5xx, recovery.

The web server reaches its database through tests.faults.PostgresCutter, which closes the
connection that sends the next COMMIT instead of forwarding it. Creating an API key writes
the key and its audit event in one transaction; cut at commit, neither may exist, the
client must hear a 503 that says nothing was saved, and the next request must succeed on
a fresh connection with the trail still verifying end to end.
"""

from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.e2e.server import ServedGatehouse, serve
from tests.faults import PostgresCutter

pytestmark = pytest.mark.reliability


@pytest.fixture
def cut_gatehouse(tmp_path: Path) -> Iterator[tuple[ServedGatehouse, PostgresCutter]]:
    with PostgresCutter() as cutter:
        served, stop = serve(tmp_path, server_database_port=cutter.port)
        try:
            yield served, cutter
        finally:
            stop()


def _rows(served: ServedGatehouse) -> tuple[int, int]:
    """API keys and audit events, read directly (not through the proxy)."""
    with psycopg.connect(served.env["DATABASE_URL"].replace("postgres://", "postgresql://", 1)) as connection:
        (keys,) = connection.execute("SELECT count(*) FROM accounts_apikey").fetchone() or (0,)
        (events,) = connection.execute("SELECT count(*) FROM audit_auditevent").fetchone() or (0,)
    return int(keys), int(events)


def _create_key(served: ServedGatehouse, headers: dict[str, str], name: str) -> httpx.Response:
    return httpx.post(
        f"{served.base_url}/api/keys/",
        json={"name": name, "scopes": ["chat"]},
        headers=headers,
        timeout=30,
    )


def test_a_connection_cut_at_commit_keeps_nothing_and_the_next_request_succeeds(
    cut_gatehouse: tuple[ServedGatehouse, PostgresCutter],
) -> None:
    served, cutter = cut_gatehouse
    headers = {"Authorization": f"Bearer {served.admin_token()}"}
    keys, events = _rows(served)

    cutter.arm()
    cut = _create_key(served, headers, "cut-at-commit")

    assert cutter.cuts == 1, "the request never reached a COMMIT"
    assert cut.status_code == 503, cut.text
    assert cut.json() == {
        "detail": "The database could not be reached, so nothing was saved; try again shortly."
    }
    assert _rows(served) == (keys, events), "a transaction cut at commit left rows behind"

    again = _create_key(served, headers, "after-the-cut")
    assert again.status_code == 201, again.text
    assert _rows(served) == (keys + 1, events + 1)
    listed = httpx.get(f"{served.base_url}/api/keys/", headers=headers, timeout=30).json()
    names = {key["name"] for key in (listed["results"] if isinstance(listed, dict) else listed)}
    assert "after-the-cut" in names
    assert "cut-at-commit" not in names
    # The chain took the lost event's place with the next one: no gap, no fork.
    assert "first broken link" not in served.manage("audit_verify", "--skip-personal")
