"""Celery tasks of the inference app (each model's on its own queue, `inference.<model>`)."""

from typing import Any

from celery import shared_task

from inference.generation import GenerationJob, generation_run
from inference.relay import ChannelRelay, background_loop


@shared_task(name="inference.tasks.inference_generate", ignore_result=True)
def inference_generate(job_payload: dict[str, Any]) -> None:
    """Run one streamed generation.

    Not acks_late: re-running a half-streamed generation after a worker crash would send
    the client a second, different stream under the same chat id.
    """
    job = GenerationJob.from_payload(job_payload)
    generation_run(job=job, relay=ChannelRelay(channel_name=job.reply_channel, loop=background_loop()))
