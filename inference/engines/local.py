"""The local engine: a Hugging Face model directory run with transformers + torch."""

import threading
from pathlib import Path
from typing import Any

from inference.engines.base import (
    ChatMessage,
    FinishReason,
    GenerationParams,
    GenerationResult,
    StopCheck,
    TokenCallback,
)
from inference.engines.detokenize import IncrementalDetokenizer
from inference.engines.device import device_resolve, dtype_resolve
from inference.manifest import manifest_verify, weights_policy_check


class PromptTooLong(ValueError):
    """The prompt plus the requested tokens do not fit the model's context."""


class LocalTransformersEngine:
    """One loaded model. Loading verifies the manifest first and never runs remote code."""

    def __init__(
        self,
        *,
        directory: Path,
        manifest: dict[str, str],
        context_length: int,
        device: str = "auto",
        dtype: str = "auto",
        allow_pickle_weights: bool = False,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        weights_policy_check(manifest=manifest, allow_pickle=allow_pickle_weights)
        manifest_verify(directory=directory, expected=manifest)
        self.device = device_resolve(preference=device)
        self.dtype = dtype_resolve(preference=dtype, device=self.device)
        self.context_length = context_length
        self.tokenizer = AutoTokenizer.from_pretrained(
            directory, trust_remote_code=False, local_files_only=True
        )
        model = AutoModelForCausalLM.from_pretrained(
            directory,
            trust_remote_code=False,
            local_files_only=True,
            # None lets transformers fall back to pickle weights, for versions allowed them.
            use_safetensors=None if allow_pickle_weights else True,
            dtype=self.dtype,
        )
        self.model = model.to(self.device).eval()
        self.eos_token_id: int | None = self.tokenizer.eos_token_id

    def encode_prompt(self, messages: list[ChatMessage]) -> Any:
        """The prompt as a (1, n) tensor of ids, built by the tokenizer's chat template."""
        conversation = [{"role": message.role, "content": message.content} for message in messages]
        encoded = self.tokenizer.apply_chat_template(
            conversation, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        return encoded["input_ids"].to(self.device)

    def generate_stream(
        self,
        *,
        messages: list[ChatMessage],
        params: GenerationParams,
        on_token: TokenCallback,
        should_stop: StopCheck,
    ) -> GenerationResult:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        input_ids = self.encode_prompt(messages)
        prompt_tokens = int(input_ids.shape[-1])
        if prompt_tokens + params.max_tokens > self.context_length:
            raise PromptTooLong(
                f"The prompt is {prompt_tokens} tokens; with max_tokens={params.max_tokens} it exceeds "
                f"the model's context of {self.context_length} tokens."
            )
        streamer = _CallbackStreamer(
            detokenizer=IncrementalDetokenizer(self.tokenizer),
            on_token=on_token,
            max_tokens=params.max_tokens,
            eos_token_id=self.eos_token_id,
            stop=params.stop,
        )
        cancelled = threading.Event()

        class _StopWhenAsked(StoppingCriteria):  # type: ignore[misc]
            """Checked every step: a cancel request, or a stop sequence the streamer saw."""

            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                if should_stop():
                    cancelled.set()
                done = cancelled.is_set() or streamer.saw_stop
                return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
            if params.temperature > 0
            else {"do_sample": False}
        )
        with torch.inference_mode():
            self.model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=params.max_tokens,
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([_StopWhenAsked()]),
                pad_token_id=self.eos_token_id,
                # transformers' own wall-clock stopping criterion, checked every step.
                max_time=params.max_seconds,
                **sampling,
            )
        if cancelled.is_set():
            finish = FinishReason.CANCELLED
        elif streamer.saw_eos or streamer.saw_stop:
            finish = FinishReason.STOP
        else:
            # max_tokens, or the wall-clock limit: either way the answer was cut at a limit.
            finish = FinishReason.LENGTH
        return GenerationResult(
            prompt_tokens=prompt_tokens, completion_tokens=streamer.count, finish_reason=finish
        )


class _CallbackStreamer:
    """A `generate()` streamer that hands each new token's text to a callback, in order.

    One callback per token. With stop sequences, the last few characters are held back
    (they might begin a stop string) and go out with a later token; the text before a stop
    string goes out with the token that completed it, and nothing after it does. A stream
    cut short by cancel or the time limit drops what was held back (at most one stop
    string's length); without stop sequences nothing is held back.
    """

    def __init__(
        self,
        *,
        detokenizer: IncrementalDetokenizer,
        on_token: TokenCallback,
        max_tokens: int,
        eos_token_id: int | None,
        stop: tuple[str, ...] = (),
    ) -> None:
        self._detokenizer = detokenizer
        self._on_token = on_token
        self._max_tokens = max_tokens
        self._eos_token_id = eos_token_id
        self._stop = tuple(text for text in stop if text)
        self._hold = max((len(text) for text in self._stop), default=1) - 1
        self._pending = ""
        self._prompt_seen = False
        self.count = 0
        self.saw_eos = False
        self.saw_stop = False

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

    def put(self, value: Any) -> None:
        # generate() first puts the prompt, then each new token.
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        for token_id in value.reshape(-1).tolist():
            self.count += 1
            is_eos = token_id == self._eos_token_id
            self.saw_eos = self.saw_eos or is_eos
            # The last token flushes any pending partial character with it.
            final = is_eos or self.count >= self._max_tokens
            self._on_token(self._release(self._detokenizer.add(int(token_id), final=final), final=final))

    def end(self) -> None:
        """Nothing to flush: the last token carried any pending text (see the class docstring)."""
