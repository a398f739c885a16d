"""The test hook GATEHOUSE_TEST_HOLD_MODELS: a held model's generation stops after its first
tokens and waits for its cancel, so a test's cancel always lands mid-generation."""

import threading
import uuid
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from accounts.models import User
from inference.cancellation import generation_cancel_request
from inference.generation import GenerationJob, generation_run
from inference.models import ModelVersion
from tests.inference.jobs import generation_job

pytestmark = pytest.mark.django_db(transaction=True)

# How long a generation runs after its first token before the test raises its cancel flag.
RUN_BEFORE_CANCEL_SECONDS = 1.0


class _Relay:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.first_token = threading.Event()

    def send(self, message: dict[str, Any]) -> None:
        self.events.append(message)
        if message["type"] == "generation.tokens" and message["texts"]:
            self.first_token.set()


def _job(bob: User, version: ModelVersion, **fields: Any) -> GenerationJob:
    return generation_job(
        bob,
        version,
        **{
            # Each test its own id: a raised cancel flag outlives its test in a shared cache.
            "generation_id": f"held-{uuid.uuid4().hex}",
            "params": {"max_tokens": 256, "temperature": 0.0},
            **fields,
        },
    )


def _run_until_cancelled(job: GenerationJob) -> list[dict[str, Any]]:
    """Run `job`; a second after its first token, raise its cancel flag (as the web tier does)."""
    relay = _Relay()
    runner = threading.Thread(target=generation_run, kwargs={"job": job, "relay": relay})
    runner.start()
    assert relay.first_token.wait(timeout=60)
    runner.join(timeout=RUN_BEFORE_CANCEL_SECONDS)
    generation_cancel_request(generation_id=job.generation_id)
    runner.join(timeout=60)
    assert not runner.is_alive()
    return relay.events


@override_settings(GATEHOUSE_TEST_HOLD_MODELS=("demo-tiny",))
def test_a_held_model_delivers_nothing_past_its_first_tokens_until_cancelled(
    bob: User, demo_version: ModelVersion
) -> None:
    events = _run_until_cancelled(_job(bob, demo_version))
    *streamed, finished = events
    first = next(event for event in streamed if event["texts"])
    delivered = sum(len(event["texts"]) for event in streamed)
    assert delivered == len(first["texts"]) < 256
    assert finished["type"] == "generation.finished"
    assert finished["finish_reason"] == "cancelled"
    assert finished["completion_tokens"] == delivered


def test_a_model_not_held_runs_on(bob: User, demo_version: ModelVersion) -> None:
    job = _job(bob, demo_version, params={"max_tokens": 24, "temperature": 0.0})
    assert job.hold_until_cancelled is False
    finished = _run_until_cancelled(job)[-1]
    assert (finished["finish_reason"], finished["completion_tokens"]) == ("length", 24)


@override_settings(GATEHOUSE_TEST_HOLD_MODELS=("demo-tiny",))
def test_the_hold_is_decided_where_the_job_is_made_and_travels_with_it(
    bob: User, demo_version: ModelVersion
) -> None:
    """A Celery worker obeys the web tier's decision, whatever its own settings say."""
    payload = _job(bob, demo_version).to_payload()
    assert payload["hold_until_cancelled"] is True
    with override_settings(GATEHOUSE_TEST_HOLD_MODELS=()):
        assert GenerationJob.from_payload(payload).hold_until_cancelled is True
        assert _job(bob, demo_version).hold_until_cancelled is False


def test_the_hold_is_refused_with_debug_off_outside_the_suite(monkeypatch: pytest.MonkeyPatch) -> None:
    from gatehouse.settings import held_models_parse

    assert held_models_parse(raw="demo-held, other", debug=False, under_tests=True) == ("demo-held", "other")
    assert held_models_parse(raw="demo-held", debug=True, under_tests=False) == ("demo-held",)
    assert held_models_parse(raw="", debug=False, under_tests=False) == ()
    with pytest.raises(ImproperlyConfigured, match="GATEHOUSE_TEST_HOLD_MODELS is a test hook"):
        held_models_parse(raw="demo-held", debug=False, under_tests=False)
