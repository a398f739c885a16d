"""The local engine: a Hugging Face model directory run with transformers + torch.

Concurrent requests are batched, each row keeping its own limits, sampling settings, stop
sequences and cancel flag: continuously where the model's cache allows it (requests join
and leave between steps, `inference.engines.continuous`), otherwise in static batches of
one left-padded `generate()` call each (`inference.engines.batching`).
"""

import json
import time
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
from inference.engines.batching import BatchRequest, RequestScheduler, StaticBatchScheduler
from inference.engines.constraints import ConstrainedRows, OutputGrammars, RowConstraint
from inference.engines.continuous import (
    ContinuousBatch,
    ContinuousBatchScheduler,
    continuous_batching_supported,
)
from inference.engines.detokenize import IncrementalDetokenizer
from inference.engines.hf_load import hf_model_load
from inference.engines.logprobs import TokenLogprobs
from inference.engines.prompt_bound import messages_bytes, prompt_byte_limit, tokenizer_max_bytes_per_token
from inference.engines.sampling import PerRowSampling, SeededRows
from inference.engines.streaming import BatchStreamer, RowStreamer, StepLogprobs


class PromptTooLong(ValueError):
    """The prompt plus the requested tokens do not fit the model's context.

    `prompt_tokens` is what tokenizing the prompt counted (charged like any use), or 0 when
    its bytes alone showed it could not fit and it was never tokenized.
    """

    def __init__(self, message: str, *, prompt_tokens: int = 0) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens


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
        batching: str = "continuous",
        cpu_threads: int = 0,
        max_batch_size: int = 8,
        max_concurrent_batches: int = 2,
        batch_gather_seconds: float = 0.01,
        batch_overflow_after_seconds: float = 0.25,
    ) -> None:
        from transformers import AutoModelForCausalLM

        loaded = hf_model_load(
            directory=directory,
            manifest=manifest,
            auto_class=AutoModelForCausalLM,
            device=device,
            dtype=dtype,
            allow_pickle_weights=allow_pickle_weights,
            cpu_threads=cpu_threads,
        )
        self.device, self.dtype = loaded.device, loaded.dtype
        self.tokenizer, self.model = loaded.tokenizer, loaded.model
        self.context_length = context_length
        # The most bytes one token stands for (None: this tokenizer gives no sound bound).
        self.max_bytes_per_token = tokenizer_max_bytes_per_token(self.tokenizer)
        self.eos_token_id: int | None = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id
        self.pad_token_id: int = pad if pad is not None else (self.eos_token_id or 0)
        self._grammars: OutputGrammars | None = None  # built at the first structured output
        self._logprobs = TokenLogprobs(self.tokenizer)
        self.scheduler: RequestScheduler
        if batching == "continuous" and continuous_batching_supported(self.model):
            self.batching = "continuous"
            self.scheduler = ContinuousBatchScheduler(
                new_batch=lambda: ContinuousBatch(
                    model=self.model,
                    tokenizer=self.tokenizer,
                    device=self.device,
                    pad_token_id=self.pad_token_id,
                    logprobs=self._logprobs,
                ),
                max_batch_size=max_batch_size,
                name=directory.name,
            )
        else:
            # Static batches run through `generate()` itself, so they serve any architecture.
            self.batching = "static"
            self.scheduler = StaticBatchScheduler(
                run_batch=self._run_batch,
                max_batch_size=max_batch_size,
                max_concurrent_batches=max_concurrent_batches,
                gather_seconds=batch_gather_seconds,
                overflow_after_seconds=batch_overflow_after_seconds,
                name=directory.name,
            )

    def close(self) -> None:
        """Stop the batch threads (called when the engine is unloaded)."""
        self.scheduler.close()

    def max_prompt_bytes(self, *, max_tokens: int) -> int | None:
        """Messages of more bytes than this surely do not fit beside `max_tokens` (None: no bound)."""
        if self.max_bytes_per_token is None:
            return None
        return prompt_byte_limit(
            context_length=self.context_length,
            max_tokens=max_tokens,
            max_bytes_per_token=self.max_bytes_per_token,
        )

    def encode_prompt(
        self, messages: list[ChatMessage], *, tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        """The prompt's token ids, built by the tokenizer's chat template (offering `tools`,
        and showing earlier calls and their results, where there are any)."""
        conversation = [_template_message(message) for message in messages]
        encoded = self.tokenizer.apply_chat_template(
            conversation, add_generation_prompt=True, return_dict=True, **({"tools": tools} if tools else {})
        )
        return [int(token_id) for token_id in encoded["input_ids"]]

    def encode_text(self, text: str) -> list[int]:
        """A prompt continued as it is (a text completion): its token ids, without a template."""
        ids = [int(token_id) for token_id in self.tokenizer(text)["input_ids"]]
        # An empty prompt is continued from the start of a text, as OpenAI does.
        return ids or [int(self.tokenizer.bos_token_id or self.eos_token_id or 0)]

    def generate_stream(
        self,
        *,
        messages: list[ChatMessage],
        params: GenerationParams,
        on_token: TokenCallback,
        should_stop: StopCheck,
        arriving_with: int = 0,
    ) -> GenerationResult:
        # Tokenizing costs time in proportion to the text: a prompt whose bytes cannot fit is
        # refused first (a conversation's stored history reaches here unchecked by admission).
        limit, size = self.max_prompt_bytes(max_tokens=params.max_tokens), messages_bytes(messages)
        if limit is not None and size > limit:
            raise PromptTooLong(
                f"The messages are {size} bytes; with max_tokens={params.max_tokens} the model's "
                f"context of {self.context_length} tokens holds at most {limit} bytes of them."
            )
        prompt_ids = (
            self.encode_text(messages[0].content)
            if params.raw_prompt
            else self.encode_prompt(messages, tools=params.tools)
        )
        if len(prompt_ids) + params.max_tokens > self.context_length:
            raise PromptTooLong(
                f"The prompt is {len(prompt_ids)} tokens; with max_tokens={params.max_tokens} it exceeds "
                f"the model's context of {self.context_length} tokens.",
                prompt_tokens=len(prompt_ids),
            )
        request = BatchRequest(
            prompt_ids=prompt_ids,
            params=params,
            constraint=self._constraint(params),
            generator=self._generator(params),
            arriving_with=arriving_with,
        )
        return self.scheduler.run(request, on_token=on_token, should_stop=should_stop)

    def _generator(self, params: GenerationParams) -> Any:
        """A seeded request's own random generator (greedy rows draw nothing: none needed)."""
        if params.seed is None or params.temperature <= 0:
            return None
        import torch

        return torch.Generator(device=self.device).manual_seed(params.seed % 2**64)

    def _constraint(self, params: GenerationParams) -> RowConstraint | None:
        """The request's grammar (compiled here, on its own thread), if it asked for a format."""
        if params.response_format is None:
            return None
        if self._grammars is None:
            vocab_size = getattr(self.model.config, "vocab_size", None) or len(self.tokenizer)
            self._grammars = OutputGrammars(tokenizer=self.tokenizer, vocab_size=int(vocab_size))
        return self._grammars.constraint_for(params.response_format)

    def batch_inputs(self, prompts: list[list[int]]) -> tuple[Any, Any]:
        """Prompts left-padded to one width, and the mask that hides the padding.

        Left, so every row's next token comes from the last column.
        """
        import torch

        width = max(len(prompt) for prompt in prompts)
        input_ids = torch.tensor(
            [[self.pad_token_id] * (width - len(prompt)) + prompt for prompt in prompts], device=self.device
        )
        attention_mask = torch.tensor(
            [[0] * (width - len(prompt)) + [1] * len(prompt) for prompt in prompts], device=self.device
        )
        return input_ids, attention_mask

    def _run_batch(self, requests: list[BatchRequest]) -> None:
        """One left-padded `generate()` for all of `requests`; every row ends on its own terms."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        input_ids, attention_mask = self.batch_inputs([request.prompt_ids for request in requests])
        width = int(input_ids.shape[1])
        rows = [
            RowStreamer(
                request=request,
                detokenizer=IncrementalDetokenizer(self.tokenizer),
                eos_token_id=self.eos_token_id,
            )
            for request in requests
        ]
        started = time.monotonic()
        tops = [request.params.logprobs for request in requests]
        step_logprobs = (
            StepLogprobs(logprobs=self._logprobs, tops=tops) if any(top is not None for top in tops) else None
        )

        class _EachRowsLimits(StoppingCriteria):  # type: ignore[misc]
            """Checked every step, per row: cancel, a stop string seen, max tokens, wall clock."""

            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                generated = int(input_ids.shape[1]) - width
                elapsed = time.monotonic() - started
                for row in rows:
                    params = row.request.params
                    if row.request.cancelled.is_set():
                        row.end(after=generated, because=FinishReason.CANCELLED)
                    elif row.saw_stop:
                        row.end(after=generated, because=FinishReason.STOP)
                    elif generated >= params.max_tokens or (
                        params.max_seconds is not None and elapsed > params.max_seconds
                    ):
                        row.end(after=generated, because=FinishReason.LENGTH)
                ended = [row.ended_after is not None for row in rows]
                return torch.tensor(ended, dtype=torch.bool, device=input_ids.device)

        with torch.inference_mode():
            self.model.generate(
                input_ids,
                attention_mask=attention_mask,
                max_new_tokens=max(request.params.max_tokens for request in requests),
                streamer=BatchStreamer(rows, step_logprobs),
                stopping_criteria=StoppingCriteriaList([_EachRowsLimits()]),
                pad_token_id=self.pad_token_id,
                **self._sampling(requests, prompt_width=width, first=step_logprobs),
            )
        for row in rows:
            row.request.finish(
                result=GenerationResult(
                    prompt_tokens=len(row.request.prompt_ids),
                    completion_tokens=row.count,
                    finish_reason=row.finish_reason,
                )
            )

    def _sampling(
        self, requests: list[BatchRequest], *, prompt_width: int, first: StepLogprobs | None
    ) -> dict[str, Any]:
        """Greedy when every row is; otherwise each row samples with its own settings. Rows
        with a structured output are masked to their grammar first; `first` (where rows asked
        for log probabilities) sees the model's own scores before anything else."""
        from transformers import LogitsProcessorList

        processors: list[Any] = [first] if first is not None else []
        constraints = [request.constraint for request in requests]
        if any(constraint is not None for constraint in constraints):
            processors.append(ConstrainedRows(constraints=constraints, prompt_width=prompt_width))
        if all(request.params.temperature <= 0 for request in requests):
            return {"do_sample": False, "logits_processor": LogitsProcessorList(processors)}
        processors.append(
            PerRowSampling(
                temperatures=[request.params.temperature for request in requests],
                top_ps=[request.params.top_p for request in requests],
                device=self.device,
            )
        )
        generators = [request.generator for request in requests]
        if any(generator is not None for generator in generators):
            processors.append(SeededRows(generators=generators))
        return {
            "do_sample": True,
            # transformers' own warpers apply one setting to every row: off, PerRowSampling instead.
            "temperature": 1.0,
            "top_p": 1.0,
            "top_k": 0,
            "logits_processor": LogitsProcessorList(processors),
        }


def _template_message(message: ChatMessage) -> dict[str, Any]:
    """A message as chat templates read it: calls' arguments as objects, where they are JSON."""
    rendered: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        rendered["tool_calls"] = [
            {**call, "function": {**call["function"], "arguments": _arguments(call["function"]["arguments"])}}
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        rendered["tool_call_id"] = message.tool_call_id
    return rendered


def _arguments(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments
