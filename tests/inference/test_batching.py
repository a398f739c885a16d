"""Concurrent requests to one model run as batches (static or continuous); every row keeps its own terms."""

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from inference.engines.base import ChatMessage, FinishReason, GenerationParams, GenerationResult
from inference.engines.batching import BatchRequest, StaticBatchScheduler, _gathering_end
from inference.engines.local import LocalTransformersEngine
from inference.engines.sampling import PerRowSampling
from tests.inference.engines import demo_engine
from tests.inference.threads import concurrently


class ReaderGone(Exception):
    pass


@pytest.fixture(params=["static", "continuous"])
def patient_engine(request: pytest.FixtureRequest, demo_directory: Path) -> Iterator[LocalTransformersEngine]:
    """Either kind of batching; static batches wait long enough that concurrent test threads share one."""
    with demo_engine(
        demo_directory, batching=request.param, batch_gather_seconds=0.5, max_concurrent_batches=1
    ) as engine:
        yield engine


def _generate(
    engine: LocalTransformersEngine,
    pieces: list[str],
    *,
    content: str = "hello",
    should_stop: Callable[[], bool] = lambda: False,
    on_token: Callable[[list[str]], None] | None = None,
    **params: object,
) -> Callable[[], GenerationResult]:
    def call() -> GenerationResult:
        return engine.generate_stream(
            messages=[ChatMessage(role="user", content=content)],
            params=GenerationParams(**params),  # type: ignore[arg-type]
            on_token=on_token or pieces.extend,
            should_stop=should_stop,
        )

    return call


def test_eight_concurrent_requests_run_as_one_batch(patient_engine: LocalTransformersEngine) -> None:
    outputs: list[list[str]] = [[] for _ in range(8)]
    results = concurrently(
        [_generate(patient_engine, pieces, max_tokens=12, temperature=0.7) for pieces in outputs]
    )
    if patient_engine.batching == "static":
        assert patient_engine.scheduler.batch_sizes == {8: 1}
    assert sum(size * count for size, count in patient_engine.scheduler.batch_sizes.items()) == 8
    for pieces, result in zip(outputs, results, strict=True):
        assert isinstance(result, GenerationResult)
        assert result.completion_tokens == len(pieces)


def test_each_row_keeps_its_own_limits_stop_and_cancel(patient_engine: LocalTransformersEngine) -> None:
    short, long, stopped, cancelled = [], [], [], []  # type: ignore[var-annotated]
    results = concurrently(
        [
            _generate(patient_engine, short, max_tokens=5, temperature=0.0),
            _generate(patient_engine, long, max_tokens=40, temperature=0.0, content="a longer prompt"),
            # The demo model's greedy answer is a run of newlines, so this stop string ends it at once.
            _generate(patient_engine, stopped, max_tokens=40, temperature=0.0, stop=("\n\n",)),
            _generate(
                patient_engine,
                cancelled,
                max_tokens=200,
                temperature=0.0,
                should_stop=lambda: len(cancelled) >= 3,
            ),
        ]
    )
    if patient_engine.batching == "static":
        assert patient_engine.scheduler.batch_sizes == {4: 1}
    short_result, long_result, stopped_result, cancelled_result = results
    assert (len(short), short_result.finish_reason) == (5, FinishReason.LENGTH)  # type: ignore[union-attr]
    assert (len(long), long_result.finish_reason) == (40, FinishReason.LENGTH)  # type: ignore[union-attr]
    assert "".join(stopped) == ""
    assert stopped_result.finish_reason is FinishReason.STOP  # type: ignore[union-attr]
    assert cancelled_result.finish_reason is FinishReason.CANCELLED  # type: ignore[union-attr]
    # Cancel is seen within a poll interval (a gathering may go out first, however many tokens
    # a fast machine made in it); what the reader got is what is counted.
    assert cancelled_result.completion_tokens == len(cancelled)  # type: ignore[union-attr]
    assert 3 <= len(cancelled) < 200


def test_a_failing_reader_ends_only_its_own_row(patient_engine: LocalTransformersEngine) -> None:
    gone: list[str] = []
    kept: list[str] = []

    def vanish(texts: list[str]) -> None:
        gone.extend(texts)
        if len(gone) >= 3:
            raise ReaderGone

    results = concurrently(
        [
            _generate(patient_engine, gone, max_tokens=30, temperature=0.0, on_token=vanish),
            _generate(patient_engine, kept, max_tokens=30, temperature=0.0),
        ]
    )
    assert isinstance(results[0], ReaderGone)
    assert len(kept) == 30
    assert isinstance(results[1], GenerationResult)
    assert results[1].finish_reason is FinishReason.LENGTH


def test_left_padding_leaves_each_rows_logits_unchanged(engine: LocalTransformersEngine) -> None:
    """A short prompt padded beside a long one scores its tokens as it would alone."""
    import torch

    long_prompt = engine.encode_prompt([ChatMessage(role="user", content="a much longer prompt here")])
    short_prompt = engine.encode_prompt([ChatMessage(role="user", content="hi")])
    batch_ids, batch_mask = engine.batch_inputs([long_prompt, short_prompt])
    alone_ids, alone_mask = engine.batch_inputs([short_prompt])
    assert batch_mask[1].tolist() == [0] * (len(long_prompt) - len(short_prompt)) + [1] * len(short_prompt)

    def step_logits(ids: object, mask: object) -> list[object]:
        with torch.inference_mode():
            output = engine.model.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=6,
                do_sample=False,
                output_logits=True,
                return_dict_in_generate=True,
                pad_token_id=engine.pad_token_id,
            )
        return list(output.logits)

    batched, alone = step_logits(batch_ids, batch_mask), step_logits(alone_ids, alone_mask)
    for step in range(6):
        assert torch.allclose(batched[step][1], alone[step][0], atol=1e-4), f"step {step} differs"


def test_per_row_sampling_applies_each_rows_settings() -> None:
    import torch

    probabilities = torch.tensor([0.6, 0.3, 0.1])
    scores = probabilities.log().repeat(3, 1)
    processed = PerRowSampling(temperatures=[0.0, 1.0, 2.0], top_ps=[1.0, 0.5, 1.0], device="cpu")(
        None, scores
    )
    finite = torch.isfinite(processed)
    assert finite[0].tolist() == [True, False, False]  # greedy: the best token only
    assert finite[1].tolist() == [True, False, False]  # top_p 0.5: 0.6 alone covers it
    assert finite[2].all()
    assert torch.allclose(processed[2], scores[2] / 2)


def _blocking_scheduler(release: threading.Event, seen: list[list[BatchRequest]]) -> StaticBatchScheduler:
    def run_batch(batch: list[BatchRequest]) -> None:
        seen.append(batch)
        release.wait(timeout=30)
        for request in batch:
            request.emit("x")
            request.finish(result=GenerationResult(len(request.prompt_ids), 1, FinishReason.STOP))

    return StaticBatchScheduler(
        run_batch=run_batch,
        max_batch_size=8,
        max_concurrent_batches=1,
        gather_seconds=0.0,
        overflow_after_seconds=0.0,
        name="test",
    )


def test_a_request_cancelled_while_waiting_never_takes_a_row() -> None:
    release, seen = threading.Event(), []  # type: ignore[var-annotated]
    scheduler = _blocking_scheduler(release, seen)
    params = GenerationParams(max_tokens=4)
    first = threading.Thread(
        target=scheduler.run,
        args=(BatchRequest(prompt_ids=[1, 2], params=params),),
        kwargs={"on_token": lambda _: None, "should_stop": lambda: False},
    )
    first.start()
    while not seen:
        threading.Event().wait(0.01)
    waiting = BatchRequest(prompt_ids=[1, 2, 3], params=params)
    asked = threading.Event()

    def cancel_after_asked() -> bool:
        asked.set()
        return True

    runner = threading.Thread(
        target=scheduler.run,
        args=(waiting,),
        kwargs={"on_token": lambda _: None, "should_stop": cancel_after_asked},
    )
    runner.start()
    asked.wait(timeout=10)
    release.set()
    first.join(timeout=10)
    runner.join(timeout=10)
    assert waiting.result == GenerationResult(3, 0, FinishReason.CANCELLED)
    assert all(waiting not in batch for batch in seen)
    scheduler.close()


def test_closing_the_scheduler_fails_what_still_waits() -> None:
    release, seen = threading.Event(), []  # type: ignore[var-annotated]
    scheduler = _blocking_scheduler(release, seen)
    params = GenerationParams(max_tokens=4)
    running = BatchRequest(prompt_ids=[1], params=params)
    threading.Thread(
        target=scheduler.run,
        args=(running,),
        kwargs={"on_token": lambda _: None, "should_stop": lambda: False},
    ).start()
    while not seen:
        threading.Event().wait(0.01)
    waiting = BatchRequest(prompt_ids=[1], params=params)
    errors: list[BaseException] = []

    def run_waiting() -> None:
        try:
            scheduler.run(waiting, on_token=lambda _: None, should_stop=lambda: False)
        except RuntimeError as exc:
            errors.append(exc)

    waiter = threading.Thread(target=run_waiting)
    waiter.start()
    while not scheduler._pending:
        threading.Event().wait(0.01)
    scheduler.close()
    release.set()
    waiter.join(timeout=10)
    assert errors
    assert "unloaded" in str(errors[0])
    # The batch already running ends as it would have (the waiter's refusal may come first).
    assert running.finished.wait(timeout=10)
    assert running.result == GenerationResult(1, 1, FinishReason.STOP)


def test_a_waiting_request_sends_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    """While it waits for a row, the reader hears empty batches: alive, nothing new."""
    monkeypatch.setattr("inference.engines.batching.HEARTBEAT_SECONDS", 0.05)
    release, seen = threading.Event(), []  # type: ignore[var-annotated]
    scheduler = _blocking_scheduler(release, seen)
    calls: list[list[str]] = []
    threading.Timer(0.5, release.set).start()
    result = scheduler.run(
        BatchRequest(prompt_ids=[1], params=GenerationParams(max_tokens=4)),
        on_token=calls.append,
        should_stop=lambda: False,
    )
    assert result.completion_tokens == 1
    assert calls[-1] == ["x"]
    assert [] in calls[:-1]
    scheduler.close()


def test_a_slow_reader_is_cancelled_without_holding_back_the_batch(
    patient_engine: LocalTransformersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One reader stops reading while seven others stream: only its own row ends."""
    # Small enough that the stuck reader overflows it well before 200 tokens; a reader that
    # keeps up never comes close.
    monkeypatch.setattr("inference.engines.batching._ROW_BUFFER_TOKENS", 64)
    slow: list[str] = []
    fast: list[list[str]] = [[] for _ in range(7)]
    streaming = threading.Barrier(7)
    release = threading.Event()

    def stuck(texts: list[str]) -> None:
        slow.extend(texts)
        release.wait(timeout=60)  # a client that stopped reading

    def keeping_up(pieces: list[str]) -> Callable[[], GenerationResult]:
        def call() -> GenerationResult:
            result = _generate(patient_engine, pieces, max_tokens=200, temperature=0.0)()
            if streaming.wait(timeout=60) == 0:  # all seven ended: one of them lets the stuck one go
                release.set()
            return result

        return call

    results = concurrently(
        [_generate(patient_engine, slow, max_tokens=200, temperature=0.0, on_token=stuck)]
        + [keeping_up(pieces) for pieces in fast]
    )
    slow_result, *fast_results = results
    for result, pieces in zip(fast_results, fast, strict=True):
        assert isinstance(result, GenerationResult)
        assert (result.finish_reason, result.completion_tokens, len(pieces)) == (
            FinishReason.LENGTH,
            200,
            200,
        )
    # Greedy and the same prompt: a stuck neighbour changed nothing in what the others got.
    assert all(pieces == fast[0] for pieces in fast)
    assert isinstance(slow_result, GenerationResult)
    assert slow_result.finish_reason is FinishReason.CANCELLED
    assert slow_result.completion_tokens == len(slow) < 200


def _one_row_scheduler(run_batch: Callable[[list[BatchRequest]], None]) -> StaticBatchScheduler:
    """A scheduler that hands each request, alone and at once, to `run_batch` (the test's batch)."""
    return StaticBatchScheduler(
        run_batch=run_batch,
        max_batch_size=1,
        max_concurrent_batches=1,
        gather_seconds=0.0,
        overflow_after_seconds=0.0,
        name="one-row",
    )


def _run_alone(
    run_batch: Callable[[list[BatchRequest]], None],
    *,
    max_tokens: int,
    on_token: Callable[[list[str]], None],
    should_stop: Callable[[], bool] = lambda: False,
) -> GenerationResult:
    """One request of `max_tokens` served by a one-row scheduler running `run_batch`, its
    reader handing each hop to `on_token`."""
    scheduler = _one_row_scheduler(run_batch)
    try:
        return scheduler.run(
            BatchRequest(prompt_ids=[1], params=GenerationParams(max_tokens=max_tokens)),
            on_token=on_token,
            should_stop=should_stop,
        )
    finally:
        scheduler.close()


class _GatheringReader:
    """A reader's `on_token` that records each hop, with the model's gathering set to `seconds`;
    `first_sent` is set once the first hop was handed on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, seconds: float) -> None:
        monkeypatch.setattr("inference.engines.batching.GATHER_SECONDS", seconds)
        monkeypatch.setattr("inference.engines.batching.GATHER_MAX_SECONDS", seconds)
        self.first_sent = threading.Event()
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> None:
        self.calls.append(texts)
        self.first_sent.set()


def test_the_reader_sends_the_first_text_at_once_then_what_gathered_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hop per gathering, not per token: the first token is not held back, and the ones the
    batch makes while the reader waits leave in one call (one channel message)."""
    hops = _GatheringReader(monkeypatch, seconds=1.0)

    def run_batch(batch: list[BatchRequest]) -> None:
        (request,) = batch
        request.emit("t0")
        hops.first_sent.wait(timeout=30)
        for index in range(1, 10):  # made one by one while the reader gathers
            threading.Event().wait(0.005)
            request.emit(f"t{index}")
        request.finish(result=GenerationResult(1, 10, FinishReason.LENGTH))

    result = _run_alone(run_batch, max_tokens=10, on_token=hops)
    assert result.completion_tokens == 10
    assert hops.calls == [["t0"], [f"t{index}" for index in range(1, 10)]]


def test_a_row_that_ends_mid_gathering_hands_on_its_last_texts_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gathering after a hop is cut short by the row's end: the stream's tail and its end
    are not held back for a gathering that would never gather more."""
    hops = _GatheringReader(monkeypatch, seconds=600.0)

    def run_batch(batch: list[BatchRequest]) -> None:
        (request,) = batch
        request.emit("t0")
        hops.first_sent.wait(timeout=30)
        request.emit("t1")
        request.finish(result=GenerationResult(1, 2, FinishReason.STOP))

    scheduler = _one_row_scheduler(run_batch)

    results: list[GenerationResult] = []
    reader = threading.Thread(
        target=lambda: results.append(
            scheduler.run(
                BatchRequest(prompt_ids=[1], params=GenerationParams(max_tokens=2)),
                on_token=hops,
                should_stop=lambda: False,
            )
        ),
        daemon=True,
    )
    reader.start()
    reader.join(timeout=30)  # far less than the gathering it would otherwise sit out
    scheduler.close()
    assert not reader.is_alive(), "the reader sat out its gathering after the row ended"
    assert hops.calls == [["t0"], ["t1"]]
    assert results[0].finish_reason is FinishReason.STOP


def test_a_readers_hops_after_its_first_fall_on_the_models_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    """After its first hop (at once, whenever the first token comes), a reader hands on its texts
    at the multiples of the gathering, so the readers of one model hop together: the web
    process and the client wake once for all their messages."""
    seconds = 0.2
    hops = _GatheringReader(monkeypatch, seconds=seconds)
    hop_times: list[float] = []

    def on_token(texts: list[str]) -> None:
        if texts:
            hop_times.append(time.monotonic())
        hops(texts)

    def run_batch(batch: list[BatchRequest]) -> None:
        (request,) = batch
        # The first token comes half-way between two points of the grid.
        while not 0.45 < (time.monotonic() % seconds) / seconds < 0.55:
            threading.Event().wait(0.001)
        for index in range(100):
            request.emit(f"t{index}")
            threading.Event().wait(0.01)
        request.finish(result=GenerationResult(1, 100, FinishReason.LENGTH))

    result = _run_alone(run_batch, max_tokens=100, on_token=on_token)
    assert result.completion_tokens == 100
    assert sum(len(texts) for texts in hops.calls) == 100
    # The first hop is off the grid and the last leaves with the row's end; those between land
    # just after a point of it (a timer's lateness allowed), not half a gathering off.
    phases = [(at % seconds) / seconds for at in hop_times[1:-1]]
    assert len(phases) >= 3
    assert all(phase < 0.35 for phase in phases), phases


def test_a_gathering_ends_on_the_grid_at_least_half_a_gathering_away() -> None:
    for now in (10.0, 10.01, 10.049, 10.05, 10.051, 10.099, 123.4567):
        end = _gathering_end(now, 0.1)
        assert now + 0.05 - 1e-9 <= end <= now + 0.15 + 1e-9
        assert abs(end / 0.1 - round(end / 0.1)) < 1e-6
    assert _gathering_end(10.0, 0.0) == 10.0


def test_a_cancel_asked_while_the_reader_was_busy_wins_over_what_the_row_made_meanwhile() -> None:
    """The client cancels while its reader is still handing on texts; meanwhile the row makes
    the rest of its answer and ends. The cancel holds: nothing more is sent, and the result
    says cancelled with what the client got (a held test model relies on this)."""
    first_sent, rest_made = threading.Event(), threading.Event()
    cancel_asked = threading.Event()

    def run_batch(batch: list[BatchRequest]) -> None:
        (request,) = batch
        request.emit("t0")
        first_sent.wait(timeout=30)
        for index in range(1, 6):
            request.emit(f"t{index}")
        request.finish(result=GenerationResult(1, 6, FinishReason.STOP))
        rest_made.set()

    calls: list[list[str]] = []

    def on_token(texts: list[str]) -> None:
        calls.append(texts)
        first_sent.set()
        assert rest_made.wait(timeout=30)
        cancel_asked.set()  # the client's cancel, while this hand-on was under way
        threading.Event().wait(0.05)  # longer than a poll interval: the next look asks

    result = _run_alone(run_batch, max_tokens=6, on_token=on_token, should_stop=cancel_asked.is_set)
    assert calls == [["t0"]]
    assert result == GenerationResult(1, 1, FinishReason.CANCELLED)
