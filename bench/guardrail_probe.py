"""The guardrail pipeline's own cost, run in a process of its own on the stack's settings
(`bench.guardrails` runs it): the request check on a chat's messages, and the answer's
redaction per streamed token. Prints one JSON line.

The guard is a demanding one: every kind of personal data and secret redacted, a deny list
of 50 terms (5 of several words) and two patterns, a length limit; the answer is redacted of
both. The request is a system prompt and a user
message (about 1 KB), with and without an email address in it; the answer is 256 tokens of
about four characters, with an email address and a card number cut across tokens.
"""

import json
import os
import statistics
import time


def _django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gatehouse.settings")
    import django

    django.setup()


SYSTEM = "You are a helpful assistant for the support team. Answer briefly and politely. " * 5
USER = "My order has not arrived yet and the tracking page shows no update since Monday. " * 7
TERMS = [f"codename{index}" for index in range(45)] + [f"project phase {index}" for index in range(5)]
PATTERNS = [r"\binternal-[0-9]{4,}\b", r"\bproject [a-z]+ secret\b"]


def _answer_tokens() -> list[str]:
    text = (
        "Thanks for waiting. " * 20
        + "Write to support@example.com with the card 4111 1111 1111 1111 and we will refund it. "
        + "Have a good day. " * 20
    )
    return [text[index : index + 4] for index in range(0, len(text), 4)][:256]


def _microseconds(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1e6, 1)


def main() -> None:
    _django_setup()
    from guardrails.detectors import KINDS
    from guardrails.prompt import prompt_guard
    from guardrails.rules import Guard, deny_terms_pattern, pattern_compile
    from guardrails.stream import StreamRedactor

    alternatives = [deny_terms_pattern(TERMS), *(f"(?:{pattern})" for pattern in PATTERNS)]
    guard = Guard(
        policies=("bench",),
        actions=tuple((kind, "redact") for kind in KINDS),
        deny=pattern_compile("|".join(alternatives)),
        max_prompt_chars=100_000,
        check_output=True,
        deny_phrases=tuple(term for term in TERMS if " " in term),
    )
    clean, personal = [SYSTEM, USER], [SYSTEM, USER + " Reach me at bob@example.com."]
    requests: dict[str, list[float]] = {"clean": [], "with_an_email": []}
    for _ in range(300):
        for name, texts in (("clean", clean), ("with_an_email", personal)):
            started = time.perf_counter()
            prompt_guard(guard=guard, texts=texts)
            requests[name].append(time.perf_counter() - started)
    tokens = _answer_tokens()
    per_token: list[float] = []
    for _ in range(50):
        redactor = StreamRedactor(kinds=guard.watched, deny=guard.deny, phrases=guard.deny_phrases)
        started = time.perf_counter()
        sent = [redactor.push(token) for token in tokens]
        sent.append(redactor.finish())
        per_token.append((time.perf_counter() - started) / len(tokens))
        assert "4111" not in "".join(sent)  # noqa: S101 - the probe checks it measured a redaction
    print(
        json.dumps(
            {
                "request_us": {name: _microseconds(samples) for name, samples in requests.items()},
                "request_chars": sum(len(text) for text in personal),
                "answer_token_us": _microseconds(per_token),
                "answer_tokens": len(tokens),
            }
        )
    )


if __name__ == "__main__":
    main()
