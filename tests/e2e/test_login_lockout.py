"""The login lockout under parallel guesses, against a served stack.

The served stack hashes passwords with the production hasher, so each guess spends real time
in the check while the others arrive: a lockout that only counted finished guesses would let
every request in flight through.
"""

import http.client
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import pytest

from tests.e2e.server import ServedGatehouse

pytestmark = pytest.mark.e2e

GUESSES = 40
# The real user, somewhere else: the whole 127/8 block is loopback, so a client bound to
# 127.0.0.2 reaches the server from another address.
ELSEWHERE = "127.0.0.2"


def _connection(gatehouse: ServedGatehouse, source: str = "127.0.0.1") -> http.client.HTTPConnection:
    url = urlparse(gatehouse.base_url)
    connection = http.client.HTTPConnection(
        url.hostname or "", url.port, timeout=120, source_address=(source, 0)
    )
    connection.connect()
    return connection


def _login(connection: http.client.HTTPConnection, username: str, password: str) -> int:
    connection.request(
        "POST",
        "/api/auth/token/",
        body=json.dumps({"username": username, "password": password}),
        headers={"Content-Type": "application/json"},
    )
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status


def _count(gatehouse: ServedGatehouse, action: str, username: str) -> int:
    script = (
        "from audit.models import AuditEvent as E; from accounts.models import User; "
        f"print(E.objects.filter(action={action!r}, target_id=str(User.objects.get(username={username!r}).pk)).count())"
    )
    return int(gatehouse.manage("shell", "-c", script).strip().splitlines()[-1])


def test_parallel_wrong_passwords_get_five_checks_and_the_owner_elsewhere_still_logs_in(
    gatehouse: ServedGatehouse,
) -> None:
    username, password = f"guessed-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    gatehouse.manage(
        "shell",
        "-c",
        f"from accounts.services.users import user_create; user_create(username={username!r}, password={password!r})",
    )
    # Every connection is open before any guess is sent; then all go at once.
    connections = [_connection(gatehouse) for _ in range(GUESSES)]
    start = threading.Barrier(GUESSES)

    def guess(connection: http.client.HTTPConnection) -> int:
        start.wait()
        return _login(connection, username, "wrong")

    with ThreadPoolExecutor(max_workers=GUESSES) as pool:
        answers = list(pool.map(guess, connections))

    assert set(answers) <= {401, 429}, answers
    assert 1 <= answers.count(401) <= 5, answers
    assert answers.count(429) >= GUESSES - 5
    # One lockout: one row for all the refusals it made.
    assert _count(gatehouse, "auth.login.blocked", username) == 1
    # At the guessing address even the right password waits for the lockout to end...
    assert _login(_connection(gatehouse), username, password) == 429
    # ...but the owner, from another address, is not locked out by someone else's guesses.
    assert _login(_connection(gatehouse, source=ELSEWHERE), username, password) == 200
