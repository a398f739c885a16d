"""Faults a test can cause on purpose: a Redis that crashes, a database connection cut at commit.

Each one is a real part misbehaving (a redis-server process killed, a TCP connection to
PostgreSQL closed), not a mock: the code under test meets the same errors as in production.
"""

import asyncio
import os
import signal
import subprocess
import threading
import time
from pathlib import Path


class RedisServer:
    """A Redis server of the test's own, so that stopping it troubles nobody else.

    `durable` runs it as a deployment should for quotas (deploy/compose.yaml): an
    append-only file synced on every write, so a crash loses no counter.
    """

    def __init__(self, *, port: int, directory: Path, durable: bool = False) -> None:
        self.port, self.directory, self.durable = port, directory, durable
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
        )
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence,
             "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            answer = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, check=False
            )
            if answer.stdout.strip() == b"PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)  # as a crash would: no goodbye to clients
            self.process.wait(timeout=10)


class PostgresCutter:
    """A TCP proxy in front of PostgreSQL that, once armed, cuts the next connection to COMMIT.

    It forwards bytes both ways untouched. Armed, it watches what clients send for a simple
    query `COMMIT` (how psycopg ends a transaction) and, instead of forwarding it, closes
    both sides of that connection: the server rolls the transaction back, the client's
    commit fails with a lost connection. That is the window the test is about: everything
    before the commit was sent, nothing of it may be kept.
    """

    def __init__(self, *, upstream_host: str = "127.0.0.1", upstream_port: int = 5432) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.cuts = 0
        self._armed = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="postgres-cutter", daemon=True)

    def __enter__(self) -> "PostgresCutter":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def arm(self) -> None:
        self._armed.set()

    @property
    def armed(self) -> bool:
        return self._armed.is_set()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _connection(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        cut = asyncio.Event()

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, watch: bool) -> None:
            try:
                while not cut.is_set() and (data := await reader.read(65536)):
                    if watch and self._armed.is_set() and _is_commit(data):
                        self._armed.clear()
                        self.cuts += 1
                        cut.set()
                        break
                    writer.write(data)
                    await writer.drain()
            except ConnectionError:
                pass
            finally:
                for side in (client_writer, server_writer):
                    side.transport.abort()  # no goodbye: as a network failure would

        await asyncio.gather(
            pump(client_reader, server_writer, watch=True), pump(server_reader, client_writer, watch=False)
        )


def _is_commit(data: bytes) -> bool:
    # A simple-query message: 'Q', a 4-byte length, the statement and a NUL.
    return data[:1] == b"Q" and data[5:].rstrip(b"\x00").strip().upper() == b"COMMIT"
