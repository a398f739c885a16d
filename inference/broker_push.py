"""Queue a generation on a Redis broker from the event loop, in one round trip.

Celery's own publish (`apply_async`) is synchronous. On every chat it ran in a thread, made
two round trips (the queue's depth, then the push) and took about a millisecond of CPU, which
the event loop waited out behind the interpreter lock. Here Celery still builds the task message
(`create_task_message`, with its publish signals, so the request id and the trace travel as
before), kombu's serializer encodes it as kombu's Redis transport would, and one script counts
the queue and pushes the message together: a full queue refuses without queueing, and two web
processes cannot both take its last place.

Only a broker that kombu reaches through its Redis transport, at one redis:// or rediss://
address with no transport options, is pushed to here (`broker_push_available`); any other goes
through Celery's producer (`inference.dispatch`).
"""

import asyncio
import base64
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from celery.signals import after_task_publish, before_task_publish
from django.conf import settings
from kombu.serialization import dumps as body_encode
from kombu.transport.redis import PRIORITY_STEPS
from kombu.transport.redis import Channel as RedisChannel
from kombu.utils.json import dumps as json_dumps
from kombu.utils.uuid import uuid

from gatehouse.redis_clients import redis_broker_async
from inference.generation import GenerationJob

# KEYS: the queue's lists (its own name first: priority 0, the only one Gatehouse sends);
# ARGV: the message, and how many may wait. Returns {queued (1 or 0), how many waited before}.
_PUSH = """
local waiting = 0
for _, key in ipairs(KEYS) do waiting = waiting + redis.call('LLEN', key) end
if waiting >= tonumber(ARGV[2]) then return {0, waiting} end
redis.call('LPUSH', KEYS[1], ARGV[1])
return {1, waiting}
"""

_REDIS_SCHEMES = ("redis", "rediss")
# kombu's persistent delivery (Celery's default, task_default_delivery_mode).
_PERSISTENT = 2

_scripts: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class BrokerPush:
    """What the push did: whether the job was queued, and how many generations waited before it."""

    queued: bool
    waiting: int


def broker_push_available() -> bool:
    """Whether the broker is one Redis server that this module can push to directly."""
    url = settings.CELERY_BROKER_URL
    return (
        urlsplit(url).scheme in _REDIS_SCHEMES
        and ";" not in url  # a list of fail-over brokers: Celery's producer walks it
        and not getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None)  # key prefixes, sentinels
    )


def queue_lists(*, queue: str) -> list[str]:
    """The Redis lists kombu keeps a queue's messages in, one per priority step; their lengths
    summed are the queue's depth (kombu's own count does the same)."""
    return [queue if not step else f"{queue}{RedisChannel.sep}{step}" for step in PRIORITY_STEPS]


def _envelope(*, queue: str, headers: dict[str, Any], properties: dict[str, Any], body: Any) -> str:
    """The message as kombu's Redis transport stores it: a JSON envelope around the body,
    which is base64 (the transport's body encoding)."""
    content_type, content_encoding, data = body_encode(body, serializer=settings.CELERY_TASK_SERIALIZER)
    encoded = data.encode(content_encoding) if isinstance(data, str) else data
    return json_dumps(
        {
            "body": base64.b64encode(encoded).decode("ascii"),
            "content-encoding": content_encoding,
            "content-type": content_type,
            "headers": headers,
            "properties": {
                **properties,
                "delivery_mode": _PERSISTENT,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": RedisChannel.body_encoding,
                "delivery_tag": uuid(),
            },
        }
    )


async def broker_push(
    *, job: GenerationJob, queue: str, task_name: str, max_waiting: int, describe: str
) -> BrokerPush:
    """Queue `job` as Celery task `task_name` on `queue`, unless `max_waiting` already wait there.

    `describe` is what the task's headers show of its arguments (argsrepr). Celery's publish
    signals are sent around the push, in their own context, as Celery's producer sends them.

    Failure mode: a broker that cannot be reached raises redis-py's error (after its timeout,
    `gatehouse.redis_clients.BROKER_TIMEOUT_SECONDS`); whether the job was queued is then
    unknown, as with any broker, and the caller's cancel flag covers both cases.
    """
    # Its own task: the signals' receivers (tracing) set context variables of the publish,
    # which must not outlive it in the caller's context, as they did not in Celery's thread.
    return await asyncio.create_task(
        _push(job=job, queue=queue, task_name=task_name, max_waiting=max_waiting, describe=describe)
    )


async def _push(
    *, job: GenerationJob, queue: str, task_name: str, max_waiting: int, describe: str
) -> BrokerPush:
    from gatehouse.celery import app

    headers, properties, body, _sent_event = app.amqp.create_task_message(
        uuid(),
        task_name,
        (job.to_payload(),),
        {},
        # The consumer gives up after the start timeout; a worker arriving later must not run
        # a generation nobody waits for.
        expires=settings.GATEHOUSE_GENERATION_START_TIMEOUT,
        reply_to=app.thread_oid,
        ignore_result=True,
        argsrepr=describe,
        kwargsrepr="{}",
    )
    before_task_publish.send(
        sender=task_name,
        body=body,
        exchange="",
        routing_key=queue,
        declare=[],
        headers=headers,
        properties=properties,
        retry_policy={},
    )
    envelope = _envelope(queue=queue, headers=headers, properties=properties, body=body)
    queued, waiting = await _script()(keys=queue_lists(queue=queue), args=[envelope, max_waiting])
    if queued:
        after_task_publish.send(sender=task_name, body=body, headers=headers, exchange="", routing_key=queue)
    return BrokerPush(queued=bool(queued), waiting=int(waiting))


def _script() -> Any:
    """The push script on this event loop's broker client (sent by its digest after the first)."""
    loop = asyncio.get_running_loop()
    script = _scripts.get(loop)
    if script is None:
        script = _scripts[loop] = redis_broker_async().register_script(_PUSH)
    return script
