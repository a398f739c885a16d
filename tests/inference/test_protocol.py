"""Client frames of SPEC §6: what is accepted, and the message for what is not."""

from typing import Any

import pytest

from inference.protocol import CancelFrame, ChatFrame, ProtocolError, frame_parse

CHAT = {"type": "chat", "id": "c1", "model": "demo-tiny", "messages": [{"role": "user", "content": "hi"}]}


def test_a_full_chat_frame_parses() -> None:
    frame = frame_parse({**CHAT, "max_tokens": 8, "temperature": 0.2, "top_p": 0.9, "unknown": "ignored"})
    assert isinstance(frame, ChatFrame)
    assert (frame.id, frame.model, frame.max_tokens, frame.temperature, frame.top_p) == (
        "c1",
        "demo-tiny",
        8,
        0.2,
        0.9,
    )
    assert frame.messages[0].content == "hi"


def test_a_cancel_frame_parses() -> None:
    assert frame_parse({"type": "cancel", "id": "c1"}) == CancelFrame(id="c1")


@pytest.mark.parametrize(
    ("payload", "message", "client_id"),
    [
        ([], "must be a JSON object", None),
        ({"type": "dance"}, "'type' must be 'chat' or 'cancel'", None),
        ({**CHAT, "id": ""}, "'id' must be a string", None),
        ({**CHAT, "id": 7}, "'id' must be a string", None),
        ({**CHAT, "id": "x" * 65}, "'id' must be a string", None),
        ({**CHAT, "model": None}, "'model' must be a model name", "c1"),
        ({**CHAT, "messages": []}, "'messages' must be a list of 1 to 100", "c1"),
        ({**CHAT, "messages": "hi"}, "'messages' must be a list", "c1"),
        ({**CHAT, "messages": ["hi"]}, r"messages\[0\] must be an object", "c1"),
        (
            {**CHAT, "messages": [{"role": "wizard", "content": "x"}]},
            r"messages\[0\].role must be one of",
            "c1",
        ),
        (
            {**CHAT, "messages": [{"role": "user", "content": 3}]},
            r"messages\[0\].content must be a string",
            "c1",
        ),
        ({**CHAT, "messages": [{"role": "user", "content": "x" * 32_001}]}, "at most 32000 characters", "c1"),
        ({**CHAT, "max_tokens": 0}, "'max_tokens' must be a positive integer", "c1"),
        ({**CHAT, "max_tokens": 2.5}, "'max_tokens' must be a positive integer", "c1"),
        ({**CHAT, "max_tokens": True}, "'max_tokens' must be a positive integer", "c1"),
        ({**CHAT, "temperature": 3}, "'temperature' must be a number from 0.0 to 2.0", "c1"),
        ({**CHAT, "temperature": "hot"}, "'temperature' must be a number", "c1"),
        ({**CHAT, "top_p": -0.1}, "'top_p' must be a number from 0.0 to 1.0", "c1"),
        ({"type": "cancel"}, "'id' must be a string", None),
        ({**CHAT, "conversation": ""}, "'conversation' must be a string", "c1"),
        ({**CHAT, "stop": ""}, "'stop' must be a string or a list", "c1"),
        ({**CHAT, "stop": ["a", "b", "c", "d", "e"]}, "'stop' must be a string or a list", "c1"),
        ({**CHAT, "stop": [1]}, "'stop' must be a string or a list", "c1"),
        ({**CHAT, "stop": "x" * 101}, "'stop' must be a string or a list", "c1"),
        ({**CHAT, "conversation": 5}, "'conversation' must be a string", "c1"),
    ],
)
def test_bad_frames_say_what_is_wrong(payload: Any, message: str, client_id: str | None) -> None:
    with pytest.raises(ProtocolError, match=message) as caught:
        frame_parse(payload)
    assert caught.value.code == "invalid"
    assert caught.value.client_id == client_id


def test_stop_accepts_one_string_or_a_list() -> None:
    assert frame_parse({**CHAT, "stop": "END"}).stop == ("END",)  # type: ignore[union-attr]
    assert frame_parse({**CHAT, "stop": ["a", "bb"]}).stop == ("a", "bb")  # type: ignore[union-attr]
