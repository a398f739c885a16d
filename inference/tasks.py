"""Celery tasks of the inference app (each model's on its own queue, `inference.<model>`)."""

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from gatehouse.worker_probe import ready_mark
from inference.engines.loader import engines_warm_up
from inference.generation import GenerationJob, generation_run
from inference.relay import RelaySender

logger = logging.getLogger(__name__)


@shared_task(name="inference.tasks.inference_generate", ignore_result=True)
def inference_generate(job_payload: dict[str, Any]) -> None:
    """Run one streamed generation.

    Not acks_late: re-running a half-streamed generation after a worker crash would send
    the client a second, different stream under the same chat id.
    """
    job = GenerationJob.from_payload(job_payload)
    generation_run(job=job, relay=RelaySender(address=job.reply_channel))


@worker_ready.connect
def _warm_up_at_start(**kwargs: Any) -> None:
    """Load the worker's models before it takes a task, then tell its readiness probe.
    A warm-up that raises leaves the worker unready (gatehouse.worker_probe)."""
    names = [name for name in settings.GATEHOUSE_WARM_MODELS if name]
    if names:
        logger.info("warmed %s", ", ".join(engines_warm_up(model_names=names)) or "nothing")
    ready_mark()
