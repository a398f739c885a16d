"""Each built-in detector finds its kind and lets look-alikes be."""

import pytest

from guardrails.detectors import findings, text_redacted

FOUND = [
    ("email", "mail bob.smith+ml@example.co.uk today"),
    ("phone", "call +44 20 7946 0958 now"),
    ("phone", "call (555) 123-4567 now"),
    ("phone", "call 555-123-4567 now"),
    ("phone", "call 020 7946 0958 now"),
    ("card", "card 4111 1111 1111 1111 ok"),
    ("card", "amex 378282246310005 ok"),
    ("card", "card 5500-0000-0000-0004 ok"),
    ("iban", "pay GB82 WEST 1234 5698 7654 32 now"),
    ("iban", "pay DE89370400440532013000 now"),
    ("ip_address", "host 192.168.1.20 down"),
    ("ip_address", "host 2001:db8::8a2e:370:7334 down"),
    ("credential", "key sk-proj-abcdefghijklmnopqrstuv here"),
    ("credential", "aws AKIAIOSFODNN7EXAMPLE here"),
    ("credential", "token eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.SflKxwRJSMeKKF2QT4 here"),
    ("credential", "gh ghp_abcdefghijklmnopqrstuvwxyz0123456789 here"),
    ("credential", "pem -----BEGIN PRIVATE KEY-----\nMIIEv\n-----END PRIVATE KEY----- here"),
    ("credential", "ours gk_abcdefghij_abcdefghijklmnopqrstuv here"),
]

LOOK_ALIKES = [
    "card 4111 1111 1111 1112 fails Luhn",
    "order 1234567 shipped",
    "account 1234 5698 7654 33 closed",
    "serial 5551234567890123 printed",
    "version 1.2.3 and 10.0 released",
    "on 2026-12-06 at 10:30:15",
    "pay GB82 WEST 1234 5698 7654 33 (bad checksum)",
    "address 999.1.1.1 is none",
    "release 1.2.3.4.5 out",
    "price 12.50 USD, 3 x 4",
    "an @ sign alone and a.b",
    "sk-short is no key",
]


@pytest.mark.parametrize(("kind", "text"), FOUND)
def test_each_kind_is_found_and_redacted_whole(kind: str, text: str) -> None:
    (finding,) = findings(text)
    assert finding.kind == kind
    first, last = text.split(" ", 1)[0], text.rsplit(" ", 1)[-1]
    assert text_redacted(text, kinds=frozenset({kind})) == f"{first} [{kind.upper()}] {last}"


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_look_alikes_are_left_alone(text: str) -> None:
    assert findings(text) == []


def test_only_the_kinds_asked_for_are_looked_for() -> None:
    text = "mail a@b.io card 4111111111111111"
    assert text_redacted(text, kinds=frozenset({"card"})) == "mail a@b.io card [CARD]"
    assert text_redacted(text, kinds=frozenset()) == text


def test_an_address_ending_a_sentence_is_found_without_its_full_stop() -> None:
    assert (
        text_redacted("It was 10.0.0.1. Then", kinds=frozenset({"ip_address"})) == "It was [IP_ADDRESS]. Then"
    )
