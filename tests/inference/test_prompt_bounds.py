"""Prompts that cannot fit a model's context: refused before tokenizing where the bytes say so,
charged what the engine counted where only its tokens do.

Runs in both profiles; the tokenizer spy sees only this process, so on the production
profile (generations on a Celery worker) it has nothing to say and the other checks carry.
"""

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient, override_settings

from accounts.models import QuotaPolicy, UsageRecord, User
from accounts.services.usage import usage_records_flush
from audit.models import AuditEvent
from inference.demo_model import DEMO_CONTEXT_LENGTH
from inference.engines.base import ChatMessage, GenerationParams
from inference.engines.local import LocalTransformersEngine, PromptTooLong
from inference.engines.prompt_bound import tokenizer_max_bytes_per_token
from inference.models import ModelVersion
from tests.accounts.helpers import quota_counter_used
from tests.inference.websocket import access_token, chat_frame, communicator_for, frames_until_end
from tests.waiting import eventually

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]

# A prompt of 2 MiB, in the most messages of the most characters each that a request may carry.
BIG_PROMPT = [{"role": "user", "content": "x" * (2 * 1024 * 1024 // 100 + 1)}] * 100


@pytest.fixture
def tokenized(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of every prompt a local engine of this process tokenizes."""
    counts: list[int] = []
    original = LocalTransformersEngine.encode_prompt

    def spy(self: LocalTransformersEngine, messages: list[ChatMessage]) -> list[int]:
        ids = original(self, messages)
        counts.append(len(ids))
        return ids

    monkeypatch.setattr(LocalTransformersEngine, "encode_prompt", spy)
    return counts


async def _tokens_policy(user: User) -> None:
    await database_sync_to_async(QuotaPolicy.objects.create)(
        name=f"{user}-tokens", user=user, tokens_per_day=10_000_000
    )


def _tokens_used(user: User) -> int:
    return quota_counter_used(user, "tokens")


def _refusals() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="inference.refused"))


async def _flushed_records() -> list[UsageRecord]:
    def flushed() -> list[UsageRecord] | None:
        usage_records_flush()
        return list(UsageRecord.objects.order_by("id")) or None

    return list(await eventually(flushed))


async def test_a_prompt_far_beyond_the_context_is_refused_on_v1_before_it_is_tokenized(
    bob: User, demo_version: ModelVersion, tokenized: list[int]
) -> None:
    await _tokens_policy(bob)
    body = {"model": "demo-tiny", "messages": BIG_PROMPT, "max_tokens": 8}
    response = await AsyncClient().post(
        "/v1/chat/completions",
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {await access_token(bob)}"},
    )
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert error["type"] == "invalid_request_error"
    assert f"context of {DEMO_CONTEXT_LENGTH} tokens" in error["message"]
    assert tokenized == []
    assert await database_sync_to_async(_tokens_used)(bob) == 0
    (refusal,) = await database_sync_to_async(_refusals)()
    assert refusal.actor_id == bob.pk
    assert refusal.outcome == AuditEvent.Outcome.DENIED
    assert refusal.metadata["code"] == "context_length_exceeded"
    assert refusal.metadata["channel"] == "api"


@override_settings(GATEHOUSE_WS_MAX_FRAME_BYTES=4 * 1024 * 1024)
async def test_a_prompt_far_beyond_the_context_is_refused_on_the_websocket_before_it_is_tokenized(
    bob: User, demo_version: ModelVersion, tokenized: list[int]
) -> None:
    await _tokens_policy(bob)
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to(chat_frame("big", messages=BIG_PROMPT))
    (error,) = await frames_until_end(communicator, "big")
    await communicator.disconnect()
    assert error["type"] == "error"
    assert error["code"] == "invalid"
    assert f"context of {DEMO_CONTEXT_LENGTH} tokens" in error["message"]
    assert tokenized == []
    assert await database_sync_to_async(_tokens_used)(bob) == 0
    (refusal,) = await database_sync_to_async(_refusals)()
    assert refusal.metadata["code"] == "context_length_exceeded"
    assert refusal.metadata["channel"] == "websocket"


async def test_a_prompt_too_long_in_tokens_is_refused_by_the_engine_and_its_prompt_charged(
    bob: User, demo_version: ModelVersion, engine: LocalTransformersEngine
) -> None:
    # 600 bytes pass the byte bound (each demo token covers up to 13 bytes), but not in tokens.
    await _tokens_policy(bob)
    messages = [{"role": "user", "content": "x" * 600}]
    prompt_tokens = len(engine.encode_prompt([ChatMessage(**message) for message in messages]))
    assert prompt_tokens + 12 > DEMO_CONTEXT_LENGTH
    headers = {"Authorization": f"Bearer {await access_token(bob)}"}
    response = await AsyncClient().post(
        "/v1/chat/completions",
        {"model": "demo-tiny", "messages": messages, "max_tokens": 12},
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "context_length_exceeded"
    (record,) = await _flushed_records()
    assert (record.outcome, record.prompt_tokens, record.completion_tokens) == ("failed", prompt_tokens, 0)
    assert await database_sync_to_async(_tokens_used)(bob) == prompt_tokens
    failed = await database_sync_to_async(AuditEvent.objects.get)(action="inference.failed")
    assert failed.metadata["prompt_tokens"] == prompt_tokens


def test_the_demo_tokenizer_covers_at_most_its_longest_token_in_bytes(
    engine: LocalTransformersEngine,
) -> None:
    # Byte tokens of one byte each, and the end-of-text marker a user may type: 13 bytes.
    assert tokenizer_max_bytes_per_token(engine.tokenizer) == len("<|endoftext|>")
    assert engine.max_prompt_bytes(max_tokens=12) == (DEMO_CONTEXT_LENGTH - 12) * 13


def test_the_engine_refuses_what_its_bytes_cannot_fit_without_tokenizing(
    engine: LocalTransformersEngine, tokenized: list[int]
) -> None:
    # A conversation's stored history reaches the engine without the admission check.
    history = [
        ChatMessage(role="user", content="y" * 4000),
        ChatMessage(role="assistant", content="z" * 4000),
    ]
    with pytest.raises(PromptTooLong, match="context of 512 tokens") as refused:
        engine.generate_stream(
            messages=history,
            params=GenerationParams(max_tokens=12),
            on_token=lambda _: None,
            should_stop=lambda: False,
        )
    assert refused.value.prompt_tokens == 0
    assert tokenized == []


def _fast_tokenizer(backend: Any) -> Any:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=backend)


def test_a_byte_fallback_vocabulary_bounds_its_tokens_by_their_longest_string() -> None:
    from tokenizers import Tokenizer, models, normalizers

    vocab = {"<unk>": 0, "<0x41>": 1, "▁": 2, "▁the": 3, "a": 4}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    # Llama's normalizer: a space becomes "▁" (longer), one is put in front. Neither shrinks text.
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    assert tokenizer_max_bytes_per_token(_fast_tokenizer(backend)) == len("▁the".encode())


def test_tokenizers_that_can_fold_unbounded_text_into_one_token_get_no_bound() -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    word_piece = Tokenizer(models.WordPiece(vocab={"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    assert tokenizer_max_bytes_per_token(_fast_tokenizer(word_piece)) is None
    stripping = Tokenizer(models.BPE(vocab={"a": 0}, merges=[]))
    stripping.pre_tokenizer = pre_tokenizers.ByteLevel()
    stripping.normalizer = normalizers.Strip()
    assert tokenizer_max_bytes_per_token(_fast_tokenizer(stripping)) is None
