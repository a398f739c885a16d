"""Hand the tokens `generate()` produces to the requests of a batch, row by row."""

from typing import Any

from inference.engines.base import FinishReason, TokenLogprob
from inference.engines.batching import BatchRequest
from inference.engines.detokenize import IncrementalDetokenizer
from inference.engines.logprobs import TokenLogprobs


class RowStreamer:
    """One batch row: turns its token ids into text and queues one text per token.

    With stop sequences, the last few characters are held back (they might begin a stop
    string) and go out with a later token; the text before a stop string goes out with the
    token that completed it, and nothing after it does. A stream cut short by cancel or the
    time limit drops what was held back (at most one stop string's length); without stop
    sequences nothing is held back.
    """

    def __init__(
        self, *, request: BatchRequest, detokenizer: IncrementalDetokenizer, eos_token_id: int | None
    ) -> None:
        self.request = request
        self._detokenizer = detokenizer
        self._eos_token_id = eos_token_id
        self._max_tokens = request.params.max_tokens
        self._stop = tuple(text for text in request.params.stop if text)
        self._hold = max((len(text) for text in self._stop), default=1) - 1
        self._pending = ""
        self.count = 0
        self.open = True
        self.saw_eos = False
        self.saw_stop = False
        # Set by the stopping criterion: why and after which token this row was ended.
        self.ended_after: int | None = None
        self.ended_because: FinishReason | None = None

    def end(self, *, after: int, because: FinishReason) -> None:
        if self.ended_after is None:
            self.ended_after, self.ended_because = after, because

    @property
    def finish_reason(self) -> FinishReason:
        if self.saw_eos or self.saw_stop:
            return FinishReason.STOP
        return self.ended_because or FinishReason.LENGTH

    def _release(self, text: str, *, final: bool) -> str:
        """The part of the decoded text that may go out now."""
        if self.saw_stop:
            return ""
        self._pending += text
        for stop in self._stop:
            at = self._pending.find(stop)
            if at != -1:
                self.saw_stop = True
                released, self._pending = self._pending[:at], ""
                return released
        cut = len(self._pending) if final else max(0, len(self._pending) - self._hold)
        released, self._pending = self._pending[:cut], self._pending[cut:]
        return released

    def put_token(self, token_id: int, logprob: TokenLogprob | None = None) -> None:
        """Queue the token's text (and its log probability, where asked: not the end of text's)."""
        if self.saw_stop:
            # Generated before the criterion saw the stop string: not part of the answer.
            self.open = False
            return
        self.count += 1
        self.saw_eos = self.saw_eos or token_id == self._eos_token_id
        # The last token flushes any pending partial character with it.
        final = self.saw_eos or self.count >= self._max_tokens or self.count == self.ended_after
        text = self._release(self._detokenizer.add(token_id, final=final), final=final)
        if token_id == self._eos_token_id:
            logprob = None
        if not self.request.emit(text, logprob) or final:
            self.open = False


class BatchStreamer:
    """A `generate()` streamer for a whole batch: each step's token goes to its row.

    Rows that have ended get padding from `generate()`; those tokens are not theirs and
    are dropped here. Where rows asked for log probabilities, `step_logprobs` saw the step's
    scores first.
    """

    def __init__(self, rows: list[RowStreamer], step_logprobs: "StepLogprobs | None" = None) -> None:
        self._rows = rows
        self._prompt_seen = False
        self._step_logprobs = step_logprobs

    def put(self, value: Any) -> None:
        # generate() first puts the prompt, then one token per row per step.
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        tokens = value.reshape(-1)
        entries = self._step_logprobs.entries(tokens) if self._step_logprobs else [None] * len(self._rows)
        for row, token_id, entry in zip(self._rows, tokens.tolist(), entries, strict=True):
            if row.open:
                row.put_token(int(token_id), entry)

    def end(self) -> None:
        """Nothing to flush: each row's last token carried its pending text."""


class StepLogprobs:
    """A `generate()` logits processor, first in line, that keeps each step's raw scores for
    the batch's streamer: the rows that asked get their picked token's log probability."""

    def __init__(self, *, logprobs: TokenLogprobs, tops: list[int | None]) -> None:
        self._logprobs = logprobs
        self._tops = tops
        self._scores: Any = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self._scores = scores.clone()
        return scores

    def entries(self, tokens: Any) -> list[TokenLogprob | None]:
        if self._scores is None:
            return [None] * len(self._tops)
        return self._logprobs.rows(self._scores, tokens, self._tops)
