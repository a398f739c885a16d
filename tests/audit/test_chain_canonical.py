"""The chain's canonical encoding is the same bytes whichever JSON library writes it.

`audit.chain.event_canonical` lets orjson write the arrays it can, for speed. An outsider's
verifier runs the standard library alone, so every byte must match `json`'s: a difference would
make a sound trail look tampered with (or the other way round).
"""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import chain

_REFERENCE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

# Every control character, the line and paragraph separators JavaScript treats apart, a byte
# order mark, characters outside the basic plane, and the quote and backslash.
_AWKWARD = st.sampled_from(
    [chr(code) for code in range(0x20)]
    + ['"', "\\", "/", "\x7f", "\u2028", "\u2029", "\ufeff", "😀", "\U0010ffff"]
)
_TEXT = st.text(alphabet=st.one_of(st.characters(blacklist_categories=("Cs",)), _AWKWARD), max_size=40)
_VALUE = st.one_of(_TEXT, st.integers(min_value=-(2**63), max_value=2**63 - 1), st.none())


@settings(max_examples=2000, deadline=None)
@given(values=st.lists(_VALUE, max_size=16))
def test_orjson_writes_the_standard_librarys_bytes(values: list[object]) -> None:
    assert chain.event_canonical(values) == _REFERENCE.encode(values).encode()


@pytest.mark.parametrize(
    "values",
    [
        [2**70],  # an integer orjson cannot hold
        [1.5, True],  # types the chain never holds: left to the standard library
    ],
    ids=["big-integer", "other-types"],
)
def test_what_orjson_cannot_write_falls_back_to_the_standard_library(values: list[object]) -> None:
    assert chain.event_canonical(values) == _REFERENCE.encode(values).encode()


def test_a_lone_surrogate_is_refused_as_before() -> None:
    """No database column can hold one; the standard library's path refused it before orjson too."""
    with pytest.raises(UnicodeEncodeError):
        chain.event_canonical(["\ud800"])


def test_the_fast_path_is_taken_where_orjson_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without orjson (an outsider's verifier) the encoding is the standard library's, and the
    same; with it, orjson writes it."""
    assert chain.orjson is not None
    calls: list[object] = []
    real = chain.orjson.dumps

    class Counting:
        @staticmethod
        def dumps(values: object) -> bytes:
            calls.append(values)
            return real(values)

    monkeypatch.setattr(chain, "orjson", Counting)
    assert chain.event_canonical([1, "a"]) == b'[1,"a"]'
    assert calls == [[1, "a"]]
    monkeypatch.setattr(chain, "orjson", None)
    assert chain.event_canonical([1, "a"]) == b'[1,"a"]'
    assert len(calls) == 1
