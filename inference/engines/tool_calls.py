"""Tool calls an upstream answers with, read as strictly as a client would read them.

An OpenAI-compatible upstream streams a call in pieces (`delta.tool_calls`: the call's index,
then its id, type and name once, then its arguments a few characters at a time) or sends it
whole (`message.tool_calls`). Only the fields of OpenAI's shape are kept; a call naming a
function the request did not offer, or a field of the wrong type, makes the answer malformed
(None here, for the caller to refuse).
"""

from typing import Any

# How many calls one answer may make, at most.
MAX_TOOL_CALLS = 128


def _function(raw: Any, *, names: frozenset[str], whole: bool) -> dict[str, str] | None:
    if not isinstance(raw, dict):
        return None
    function: dict[str, str] = {}
    for field in ("name", "arguments"):
        value = raw.get(field)
        if value is None and not whole:
            continue
        if not isinstance(value, str):
            return None
        function[field] = value
    if "name" in function and function["name"] not in names:
        return None
    return function


def tool_call_deltas_read(raw: Any, *, names: frozenset[str]) -> list[dict[str, Any]] | None:
    """One streamed chunk's pieces of calls, or None if any is malformed."""
    if not isinstance(raw, list):
        return None
    deltas = [_delta(item, names=names) for item in raw]
    return None if None in deltas else [delta for delta in deltas if delta is not None]


def _delta(item: Any, *, names: frozenset[str]) -> dict[str, Any] | None:
    index = item.get("index") if isinstance(item, dict) else None
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_TOOL_CALLS:
        return None
    delta: dict[str, Any] = {"index": index}
    if item.get("id") is not None:
        delta["id"] = item["id"]
    if item.get("type") is not None:
        delta["type"] = item["type"]
    if item.get("function") is not None:
        delta["function"] = _function(item["function"], names=names, whole=False)
    if not isinstance(delta.get("id", ""), str) or delta.get("type", "function") != "function":
        return None
    return None if "function" in delta and delta["function"] is None else delta


def tool_calls_merge(deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Whole calls from their pieces (by index, arguments joined in order)."""
    calls: dict[int, dict[str, Any]] = {}
    for delta in deltas:
        call = calls.setdefault(
            delta["index"], {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
        )
        call["id"] = delta.get("id") or call["id"]
        function = delta.get("function") or {}
        call["function"]["name"] = function.get("name") or call["function"]["name"]
        call["function"]["arguments"] += function.get("arguments") or ""
    return [calls[index] for index in sorted(calls)]


def tool_calls_read(raw: Any, *, names: frozenset[str]) -> list[dict[str, Any]] | None:
    """A whole answer's calls, or None if any is malformed."""
    if not isinstance(raw, list) or len(raw) > MAX_TOOL_CALLS:
        return None
    calls = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            return None
        if item.get("type", "function") != "function":
            return None
        function = _function(item.get("function"), names=names, whole=True)
        if function is None:
            return None
        calls.append({"id": item["id"], "type": "function", "function": function})
    return calls
