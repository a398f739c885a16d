"""The demo models of SPEC §7: a tiny GPT-2 (`demo-tiny`) and a tiny BERT encoder
(`demo-embed`, for embeddings), sharing a byte-level tokenizer, built offline.

Deterministic (fixed seed, no download), saved as ordinary Hugging Face model directories,
and loaded through the same `AutoModelForCausalLM` / `AutoModel` / `AutoTokenizer` path as any
other model. Their output is noise; everything around them is the real pipeline.
"""

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

DEMO_MODEL_NAME = "demo-tiny"
DEMO_EMBED_MODEL_NAME = "demo-embed"
DEMO_VERSION_LABEL = "v1"
DEMO_CONTEXT_LENGTH = 512
DEMO_EMBED_DIMENSIONS = 64
_SEED = 0
_END_OF_TEXT = "<|endoftext|>"
# Without a chat template a tokenizer cannot turn messages into a prompt; this one marks
# each turn with its role, like the role markers real chat models use. Offered tools, it lists
# them first and shows calls the Hermes / Qwen way (`<tool_call>{"name", "arguments"}</tool_call>`),
# the version's tool-call format.
DEMO_CHAT_TEMPLATE = (
    "{% if tools %}<|tools|>\n"
    "{% for tool in tools %}{{ tool['function'] | tojson }}\n{% endfor %}{% endif %}"
    "{% for message in messages %}<|{{ message['role'] }}|>\n"
    "{% if message['tool_calls'] is defined and message['tool_calls'] %}"
    "{% for call in message['tool_calls'] %}<tool_call>"
    "{{ {'name': call['function']['name'], 'arguments': call['function']['arguments']} | tojson }}"
    "</tool_call>{% endfor %}{{ '\\n' }}"
    "{% else %}{{ message['content'] }}\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def demo_tokenizer_build(directory: Path) -> int:
    """Save a byte-level tokenizer (256 byte tokens, no merges) and return its vocab size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {char: index for index, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab[_END_OF_TEXT] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=_END_OF_TEXT,
        eos_token=_END_OF_TEXT,
        pad_token=_END_OF_TEXT,
        model_max_length=DEMO_CONTEXT_LENGTH,
    )
    tokenizer.chat_template = DEMO_CHAT_TEMPLATE
    tokenizer.save_pretrained(directory)
    return len(vocab)


def _unprintable_token_ids(directory: Path) -> list[int]:
    """Ids of the byte tokens that are not printable ASCII (newline excepted)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)

    def readable(text: str) -> bool:
        return text == "\n" or (len(text) == 1 and text.isascii() and text.isprintable())

    # A lone byte of 0x80 or above decodes to U+FFFD, so it is suppressed too.
    return [
        token_id
        for token_id in range(len(tokenizer))
        if token_id not in tokenizer.all_special_ids and not readable(tokenizer.decode([token_id]))
    ]


def _build_model(directory: Path, *, vocab_size: int) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    end_of_text_id = vocab_size - 1
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=DEMO_CONTEXT_LENGTH,
        n_embd=64,
        n_layer=2,
        n_head=2,
        bos_token_id=end_of_text_id,
        eos_token_id=end_of_text_id,
        pad_token_id=end_of_text_id,
    )
    torch.manual_seed(_SEED)
    model = GPT2LMHeadModel(config)
    # Random weights pick any byte; most are not valid UTF-8 alone. The standard
    # `suppress_tokens` generation setting keeps the demo's noise to readable ASCII.
    model.generation_config.suppress_tokens = _unprintable_token_ids(directory)
    model.save_pretrained(directory, safe_serialization=True)


def _build_encoder(directory: Path, *, vocab_size: int) -> None:
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=DEMO_EMBED_DIMENSIONS,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=4 * DEMO_EMBED_DIMENSIONS,
        max_position_embeddings=DEMO_CONTEXT_LENGTH,
        pad_token_id=vocab_size - 1,
    )
    torch.manual_seed(_SEED)
    BertModel(config).save_pretrained(directory, safe_serialization=True)


def demo_model_build(*, directory: Path) -> None:
    """Write the demo chat model to `directory`, replacing it whole (never a half-written model)."""
    _staged_build(directory, build=_build_model)


def demo_embed_model_build(*, directory: Path) -> None:
    """Write the demo embedding model (an encoder) to `directory`, replacing it whole."""
    _staged_build(directory, build=_build_encoder)


def _staged_build(directory: Path, *, build: Callable[..., None]) -> None:
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        vocab_size = demo_tokenizer_build(staging)
        build(staging, vocab_size=vocab_size)
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
