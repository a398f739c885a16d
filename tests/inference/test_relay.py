"""The relay: generation events from the generating thread to the inbox of their request.

In one process the sender hands events straight to the inbox's loop; between processes each
hop is one Redis PUBLISH on the mailbox's channel. The Redis tests run a Redis of their own
(so that stopping it troubles nobody else), in both profiles.
"""

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inference.cancellation import generation_cancel_requested
from inference.relay import LOST, OVERFLOWED, Inbox, ReaderGone, RelaySender, relay_inbox_open
from tests.e2e.server import free_port
from tests.faults import RedisServer


@pytest.fixture
def own_redis(tmp_path: Path, settings: Any) -> Iterator[RedisServer]:
    server = RedisServer(port=free_port(), directory=tmp_path)
    server.start()
    original, settings.REDIS_URL = settings.REDIS_URL, server.url
    yield server
    settings.REDIS_URL = original  # before it stops: other fixtures' teardowns use Redis too
    server.stop()


@pytest.fixture
def without_redis(settings: Any) -> None:
    settings.REDIS_URL = ""


@pytest.fixture
def across_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Senders see no mailbox in this process: every event goes through Redis, as from a worker."""
    monkeypatch.setattr("inference.relay.sender.mailbox_local", lambda name: None)


def _tokens(generation_id: str, index: int, texts: list[str]) -> dict[str, Any]:
    return {
        "type": "generation.tokens",
        "generation_id": generation_id,
        "client_id": "c1",
        "index": index,
        "texts": texts,
    }


async def _send_from_a_thread(address: str, events: list[dict[str, Any]]) -> None:
    sender = RelaySender(address=address)
    await asyncio.to_thread(lambda: [sender.send(event) for event in events])


async def _received(inbox: Inbox, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(10):
        return [await inbox.get() for _ in range(count)]


@pytest.mark.usefixtures("without_redis")
async def test_in_one_process_events_reach_the_inbox_in_order_without_redis() -> None:
    inbox = await relay_inbox_open()
    events = [_tokens("g1", index, [f"t{index}"]) for index in range(200)]
    await _send_from_a_thread(inbox.address, events)
    assert await _received(inbox, 200) == events
    inbox.close()


@pytest.mark.usefixtures("own_redis", "across_processes")
async def test_between_processes_each_hop_is_one_publish_and_order_holds(own_redis: RedisServer) -> None:
    import redis

    inbox, other = await relay_inbox_open(), await relay_inbox_open()
    events = [_tokens("g1", index, [f"t{index}", "x"]) for index in range(0, 400, 2)]
    client = redis.Redis.from_url(own_redis.url)
    published_before = int(client.info("commandstats").get("cmdstat_publish", {}).get("calls", 0))
    await asyncio.gather(
        _send_from_a_thread(inbox.address, events),
        _send_from_a_thread(other.address, [_tokens("g2", 0, ["other"])]),
    )
    assert await _received(inbox, 200) == events
    assert await _received(other, 1) == [_tokens("g2", 0, ["other"])]
    published = int(client.info("commandstats")["cmdstat_publish"]["calls"]) - published_before
    assert published == 201
    inbox.close()
    other.close()


@pytest.mark.usefixtures("without_redis")
async def test_a_sender_is_told_when_its_reader_has_gone() -> None:
    inbox = await relay_inbox_open()
    inbox.close()
    with pytest.raises(ReaderGone):
        await _send_from_a_thread(inbox.address, [_tokens("g1", 0, ["late"])])


@pytest.mark.usefixtures("own_redis", "across_processes")
async def test_a_worker_is_told_when_nobody_reads_its_mailbox_any_more() -> None:
    with pytest.raises(ReaderGone, match="nobody reads"):
        await _send_from_a_thread("gatehouse:relay:gone!inbox", [_tokens("g1", 0, ["late"])])


@pytest.mark.usefixtures("own_redis")
async def test_losing_redis_tells_every_open_inbox_and_the_next_inbox_subscribes_again(
    own_redis: RedisServer,
) -> None:
    inboxes = [await relay_inbox_open(), await relay_inbox_open()]
    own_redis.stop()
    for inbox in inboxes:
        event = await _received(inbox, 1)
        assert event[0]["type"] == LOST
        assert "subscription failed" in event[0]["reason"]
    own_redis.start()
    again = await relay_inbox_open()
    events = [_tokens("g3", 0, ["back"])]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("inference.relay.sender.mailbox_local", lambda name: None)
        await _send_from_a_thread(again.address, events)
    assert await _received(again, 1) == events


def test_an_inbox_holds_a_bounded_backlog_then_stops_the_generation_that_overflows_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("inference.relay.inbox.INBOX_MAX_TOKENS", 5)
    stopped: list[str] = []
    loop = asyncio.new_event_loop()
    try:
        inbox = Inbox(address="m!i", loop=loop, on_overflow=stopped.append, on_close=lambda inbox: None)
        inbox.deliver(_tokens("slow", 0, ["a", "b", "c"]))
        inbox.deliver(_tokens("other", 0, ["x"]))
        inbox.deliver(_tokens("slow", 3, ["d", "e"]))  # 6 waiting: over the bound
        inbox.deliver(_tokens("slow", 5, ["f"]))  # dropped: the generation was stopped
        inbox.deliver({"type": "generation.finished", "generation_id": "slow", "client_id": "c1"})  # dropped
        inbox.deliver({"type": "generation.finished", "generation_id": "other", "client_id": "c1"})
        received = loop.run_until_complete(_received(inbox, 4))
    finally:
        loop.close()
    assert stopped == ["slow"]
    assert [(event["type"], event["generation_id"]) for event in received] == [
        ("generation.tokens", "slow"),
        ("generation.tokens", "other"),
        (OVERFLOWED, "slow"),
        ("generation.finished", "other"),
    ]


@pytest.mark.usefixtures("without_redis")
async def test_a_mailbox_stops_an_overflowing_generation_with_its_cancel_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("inference.relay.inbox.INBOX_MAX_TOKENS", 1)
    inbox = await relay_inbox_open()
    await _send_from_a_thread(inbox.address, [_tokens("flooding", 0, ["a", "b"])])
    assert (await _received(inbox, 1))[0]["type"] == OVERFLOWED
    deadline = asyncio.get_running_loop().time() + 10
    while not await asyncio.to_thread(generation_cancel_requested, generation_id="flooding"):
        assert asyncio.get_running_loop().time() < deadline, "the generation was not told to stop"
        await asyncio.sleep(0.01)
    inbox.close()


def test_senders_on_many_threads_each_keep_their_own_order() -> None:
    """Eight generations at once into one inbox, as eight chats on one connection."""

    async def run() -> dict[str, list[int]]:
        inbox = await relay_inbox_open()
        barrier = threading.Barrier(8)

        def generate(name: str) -> None:
            sender = RelaySender(address=inbox.address)
            barrier.wait(timeout=10)
            for index in range(100):
                sender.send(_tokens(name, index, ["t"]))

        threads = [threading.Thread(target=generate, args=(f"g{number}",)) for number in range(8)]
        for thread in threads:
            thread.start()
        await asyncio.to_thread(lambda: [thread.join(timeout=30) for thread in threads])
        seen: dict[str, list[int]] = {}
        for event in await _received(inbox, 800):
            seen.setdefault(event["generation_id"], []).append(event["index"])
        inbox.close()
        return seen

    seen = asyncio.run(run())
    assert seen == {f"g{number}": list(range(100)) for number in range(8)}
