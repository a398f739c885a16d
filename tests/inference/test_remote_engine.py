"""The remote OpenAI-compatible engine against a fake upstream on loopback."""

import pytest

from inference.engines.base import ChatMessage, FinishReason, GenerationParams
from inference.engines.circuit_breaker import CircuitBreaker
from inference.engines.remote import OpenAICompatibleEngine, RemoteUnavailable
from tests.fake_openai import FakeUpstream, clock_advance

HELLO = [ChatMessage(role="user", content="hello")]


def _engine(upstream: FakeUpstream, **options: object) -> OpenAICompatibleEngine:
    defaults: dict[str, object] = {
        "retry_backoff": 0.01,
        "read_timeout": 1.0,
        "breaker": CircuitBreaker(threshold=3),
    }
    defaults.update(options)
    return OpenAICompatibleEngine(
        base_url=upstream.base_url, model="upstream-model", api_key="sk-upstream", **defaults
    )  # type: ignore[arg-type]


def _run(engine: OpenAICompatibleEngine, **params: object) -> tuple[list[str], object]:
    pieces: list[str] = []
    result = engine.generate_stream(
        messages=HELLO,
        params=GenerationParams(**{"max_tokens": 16, **params}),  # type: ignore[arg-type]
        on_token=pieces.extend,
        should_stop=lambda: False,
    )
    return pieces, result


def test_streams_chunks_and_reports_the_upstreams_usage(upstream: FakeUpstream) -> None:
    pieces, result = _run(_engine(upstream), stop=("END",))
    assert pieces == upstream.words
    assert result.completion_tokens == 8  # type: ignore[attr-defined]
    assert result.prompt_tokens == 11  # type: ignore[attr-defined]
    assert result.finish_reason is FinishReason.STOP  # type: ignore[attr-defined]
    sent = upstream.requests[0]
    assert sent["authorization"] == "Bearer sk-upstream"
    assert sent["body"]["stream"] is True
    assert sent["body"]["model"] == "upstream-model"
    assert sent["body"]["stop"] == ["END"]


def test_failures_before_the_first_token_are_retried(upstream: FakeUpstream) -> None:
    upstream.mode = "fail_first_2"
    pieces, _ = _run(_engine(upstream, max_retries=2))
    assert pieces == upstream.words
    assert len(upstream.requests) == 3


def test_it_gives_up_after_its_retries(upstream: FakeUpstream) -> None:
    upstream.mode = "always_503"
    with pytest.raises(RemoteUnavailable, match="after 3 tries"):
        _run(_engine(upstream, max_retries=2))
    assert len(upstream.requests) == 3


def test_a_client_error_is_not_retried(upstream: FakeUpstream) -> None:
    upstream.mode = "bad_request"
    with pytest.raises(RemoteUnavailable, match="refused the request"):
        _run(_engine(upstream))
    assert len(upstream.requests) == 1


def test_a_hanging_upstream_times_out(upstream: FakeUpstream) -> None:
    """The client gives up on its read timeout while the upstream still holds its answer."""
    upstream.mode = "hang"
    with pytest.raises(RemoteUnavailable, match="did not answer"):
        _run(_engine(upstream, read_timeout=0.3, max_retries=1))
    # Both tries were sent, and neither was answered: the error came from the client's timeout.
    assert len(upstream.requests) == upstream.held == 2
    assert upstream.answered_after_hold == 0
    upstream.release()


def test_a_reset_after_the_first_token_is_not_retried(upstream: FakeUpstream) -> None:
    upstream.mode = "reset_mid_stream"
    pieces: list[str] = []
    with pytest.raises(RemoteUnavailable, match="mid-stream"):
        _engine(upstream).generate_stream(
            messages=HELLO,
            params=GenerationParams(max_tokens=16),
            on_token=pieces.extend,
            should_stop=lambda: False,
        )
    assert pieces == upstream.words[:2]
    assert len(upstream.requests) == 1


def test_the_circuit_opens_and_fails_fast(upstream: FakeUpstream) -> None:
    upstream.mode = "always_503"
    engine = _engine(upstream, max_retries=0, breaker=CircuitBreaker(threshold=2, reset_seconds=60))
    for _ in range(2):
        with pytest.raises(RemoteUnavailable, match="did not answer"):
            _run(engine)
    with pytest.raises(RemoteUnavailable, match="circuit open"):
        _run(engine)
    assert len(upstream.requests) == 2  # the third call never reached the upstream


def test_the_circuit_lets_a_trial_through_after_its_pause(
    upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream.mode = "always_503"
    engine = _engine(upstream, max_retries=0, breaker=CircuitBreaker(threshold=1, reset_seconds=0.2))
    with pytest.raises(RemoteUnavailable):
        _run(engine)
    upstream.mode = "ok"
    with pytest.raises(RemoteUnavailable, match="circuit open"):
        _run(engine)  # still within the pause
    clock_advance(monkeypatch, seconds=0.2)
    pieces, _ = _run(engine)
    assert pieces == upstream.words
    assert engine.breaker.opened_at is None
    assert len(upstream.requests) == 2  # the failure and the trial


def test_cancel_stops_reading(upstream: FakeUpstream) -> None:
    upstream.delay = 0.05
    pieces: list[str] = []
    result = _engine(upstream).generate_stream(
        messages=HELLO,
        params=GenerationParams(max_tokens=16),
        on_token=pieces.extend,
        should_stop=lambda: len(pieces) >= 2,
    )
    assert result.finish_reason is FinishReason.CANCELLED
    assert result.completion_tokens == len(pieces) == 2


def test_negative_usage_from_the_upstream_is_not_believed(upstream: FakeUpstream) -> None:
    upstream.usage = {"prompt_tokens": -1000, "completion_tokens": -500, "total_tokens": -1500}
    _, result = _run(_engine(upstream))
    assert result.prompt_tokens == len(b"hello")  # type: ignore[attr-defined]
    assert result.completion_tokens == len(upstream.words)  # type: ignore[attr-defined]


def test_usage_past_max_tokens_is_clamped_to_it(upstream: FakeUpstream) -> None:
    upstream.usage = {"prompt_tokens": 3, "completion_tokens": 10**12}
    _, result = _run(_engine(upstream))
    assert result.completion_tokens == 16  # type: ignore[attr-defined] - the request's max_tokens
    assert result.prompt_tokens == 3  # type: ignore[attr-defined]


def test_usage_that_is_not_a_count_falls_back_to_what_was_streamed(upstream: FakeUpstream) -> None:
    upstream.usage = {"prompt_tokens": "many", "completion_tokens": 2.5}
    _, result = _run(_engine(upstream))
    assert result.completion_tokens == len(upstream.words)  # type: ignore[attr-defined]
    assert result.prompt_tokens == len(b"hello")  # type: ignore[attr-defined]


def test_missing_usage_is_counted_from_the_stream_and_the_prompt(upstream: FakeUpstream) -> None:
    upstream.usage = None
    _, result = _run(_engine(upstream))
    assert result.completion_tokens == len(upstream.words)  # type: ignore[attr-defined]
    assert result.prompt_tokens == len(b"hello")  # type: ignore[attr-defined]


def test_fewer_completion_tokens_than_streamed_pieces_is_impossible(upstream: FakeUpstream) -> None:
    upstream.usage = {"prompt_tokens": 11, "completion_tokens": 1}
    _, result = _run(_engine(upstream))
    assert result.completion_tokens == len(upstream.words)  # type: ignore[attr-defined]


def test_an_upstream_ignoring_max_tokens_is_cut_at_it(upstream: FakeUpstream) -> None:
    pieces, result = _run(_engine(upstream), max_tokens=3)
    assert pieces == upstream.words[:3]
    assert result.completion_tokens == 3  # type: ignore[attr-defined]
    assert result.finish_reason is FinishReason.LENGTH  # type: ignore[attr-defined]


def test_an_answer_of_exactly_max_tokens_keeps_the_upstreams_usage(upstream: FakeUpstream) -> None:
    pieces, result = _run(_engine(upstream), max_tokens=len(upstream.words))
    assert pieces == upstream.words
    assert result.prompt_tokens == 11  # type: ignore[attr-defined]
    assert result.completion_tokens == len(upstream.words)  # type: ignore[attr-defined]
