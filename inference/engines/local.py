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
from inference.manifest import manifest_verify


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
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
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
            use_safetensors=True,
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
        )
        cancelled = threading.Event()

        class _StopWhenAsked(StoppingCriteria):  # type: ignore[misc]
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                if should_stop():
                    cancelled.set()
                return torch.full(
                    (input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool, device=input_ids.device
                )

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
                **sampling,
            )
        if cancelled.is_set():
            finish = FinishReason.CANCELLED
        elif streamer.saw_eos:
            finish = FinishReason.STOP
        else:
            finish = FinishReason.LENGTH
        return GenerationResult(
            prompt_tokens=prompt_tokens, completion_tokens=streamer.count, finish_reason=finish
        )


class _CallbackStreamer:
    """A `generate()` streamer that hands each new token's text to a callback, in order."""

    def __init__(
        self,
        *,
        detokenizer: IncrementalDetokenizer,
        on_token: TokenCallback,
        max_tokens: int,
        eos_token_id: int | None,
    ) -> None:
        self._detokenizer = detokenizer
        self._on_token = on_token
        self._max_tokens = max_tokens
        self._eos_token_id = eos_token_id
        self._prompt_seen = False
        self.count = 0
        self.saw_eos = False

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
            self._on_token(self._detokenizer.add(int(token_id), final=final))

    def end(self) -> None:
        """Nothing to flush: the last token already carried any pending text."""
