"""Send a generation to where it runs: a thread pool here, or a Celery worker."""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import cache

from asgiref.sync import sync_to_async
from django.conf import settings

from inference.generation import GenerationJob, generation_run
from inference.relay import ChannelRelay


def inference_queue(*, model_name: str) -> str:
    """The Celery queue of one model: `celery -A gatehouse worker -Q inference.<model>` serves it."""
    return f"inference.{model_name}"


@cache
def _inprocess_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(
        max_workers=settings.GATEHOUSE_INPROCESS_WORKERS, thread_name_prefix="gatehouse-generate"
    )


def _run_inprocess(job: GenerationJob, loop: asyncio.AbstractEventLoop) -> None:
    generation_run(job=job, relay=ChannelRelay(channel_name=job.reply_channel, loop=loop))


async def generation_dispatch(*, job: GenerationJob) -> None:
    """Start `job` without blocking the event loop; its events arrive on `job.reply_channel`."""
    if settings.GATEHOUSE_INFERENCE_EXECUTOR == "celery":
        from inference.tasks import inference_generate

        await sync_to_async(inference_generate.apply_async, thread_sensitive=False)(
            args=(job.to_payload(),),
            queue=inference_queue(model_name=job.model_name),
            # The consumer gives up after the start timeout; a worker arriving later must not
            # run a generation nobody waits for.
            expires=settings.GATEHOUSE_GENERATION_START_TIMEOUT,
        )
        return
    _inprocess_pool().submit(_run_inprocess, job, asyncio.get_running_loop())
