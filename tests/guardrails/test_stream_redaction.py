"""An answer redacted as it streams: however its text is cut into tokens, no piece of a match
is ever sent, and what is sent adds up to the whole answer redacted."""

import itertools

from hypothesis import given
from hypothesis import strategies as st

from guardrails.detectors import KINDS, text_redacted
from guardrails.stream import HOLD_LIMIT, StreamRedactor

ANSWER = (
    "Your card 4111 1111 1111 1111 is on file; write to ops@example.com or call +44 20 7946 0958. "
    "The key was sk-proj-abcdefghijklmnopqrstuv and the host 192.168.1.20. Done."
)
ALL = frozenset(KINDS)


def _streamed(text: str, cuts: list[int], kinds: frozenset[str] = ALL) -> list[str]:
    redactor = StreamRedactor(kinds=kinds)
    bounds = [0, *sorted(set(cuts)), len(text)]
    sent = [redactor.push(text[start:end]) for start, end in itertools.pairwise(bounds)]
    return [*sent, redactor.finish()]


def test_a_card_number_split_across_tokens_leaves_only_as_its_placeholder() -> None:
    sent = _streamed("Card: 4111 1111 1111 1111. Thanks", [8, 10, 13, 15, 20, 24, 26])
    assert "".join(sent) == "Card: [CARD]. Thanks"
    assert not any(char.isdigit() for piece in sent for char in piece)


@given(st.lists(st.integers(min_value=0, max_value=len(ANSWER)), max_size=40))
def test_any_cutting_sends_the_whole_answer_redacted_and_no_piece_of_a_match(cuts: list[int]) -> None:
    sent = _streamed(ANSWER, cuts)
    assert "".join(sent) == text_redacted(ANSWER, kinds=ALL)
    for secret in ("4111", "1111", "ops@", "example.com", "7946", "abcdefghij", "168.1"):
        assert not any(secret in piece for piece in sent), secret


def test_text_that_cannot_start_a_match_goes_at_once() -> None:
    redactor = StreamRedactor(kinds=ALL)
    assert redactor.push("Hello, world! ") == "Hello, world! "
    assert redactor.push("How are") == "How "  # a word may still grow into an address
    assert redactor.push(" you?") == "are you?"


def test_allowed_kinds_pass_through() -> None:
    assert "".join(_streamed(ANSWER, [20, 60], kinds=frozenset({"card"}))).count("@example.com") == 1


def test_an_unending_private_key_block_is_let_go_redacted_past_the_limit() -> None:
    redactor = StreamRedactor(kinds=ALL)
    assert redactor.push("-----BEGIN PRIVATE KEY-----\n") == ""
    body = redactor.push("A" * (HOLD_LIMIT + 10))
    assert body.startswith("-----BEGIN PRIVATE KEY-----")  # let go: it cannot be held for ever
    assert redactor.redacted == {}


def test_a_deny_list_phrase_split_across_tokens_leaves_only_as_denied() -> None:
    from guardrails.rules import deny_terms_pattern, pattern_compile

    deny = pattern_compile(deny_terms_pattern(["Project Falcon", "zeta"]) + r"|(?:\binternal-[0-9]+\b)")
    redactor = StreamRedactor(kinds=ALL, deny=deny, phrases=("project falcon",))
    pieces = ["About pro", "ject", " Fal", "con and ze", "ta, see internal-", "42 please"]
    sent = [redactor.push(piece) for piece in pieces] + [redactor.finish()]
    assert "".join(sent) == "About [DENIED] and [DENIED], see [DENIED] please"
    assert not any(word in piece.lower() for piece in sent for word in ("fal", "zeta", "internal"))
    assert redactor.redacted == {"denied": 3}
    assert "".join(_streamed("a projector works", [3, 9])) == "a projector works"  # no phrase: let go


def test_a_stored_reply_is_redacted_as_its_answer_was_sent() -> None:
    from guardrails.stream import stored_reply

    redaction = {"kinds": ["email"], "deny": r"(?<!\w)(?:falcon)(?!\w)"}
    assert stored_reply("Falcon: mail a@b.io", redaction) == "[DENIED]: mail [EMAIL]"
    assert stored_reply("Falcon: mail a@b.io", None) == "Falcon: mail a@b.io"
