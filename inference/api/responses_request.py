"""Validate an OpenAI Responses request (stateless) by turning it into the chat completion it
means, which `completion_request_parse` then validates as any other.

    input               a string, or items: messages (easy or typed, text parts), the
                        assistant's earlier `function_call`s and their `function_call_output`s
    instructions        a system message before the input
    tools               function tools (flat: name, description, parameters, strict)
    tool_choice         none | auto | required | {"type": "function", "name"}
    text.format         text | json_object | json_schema (name, schema, strict)
    max_output_tokens, temperature, top_p, parallel_tool_calls, stream

Nothing is stored: `store` must be false or left out (and is answered false), and
`previous_response_id` is refused, as are hosted tools and any field not listed here.
"""

from dataclasses import replace
from typing import Any

from inference.api.completion_request import CompletionRequest, completion_request_parse
from inference.api.request_invalid import CompletionRequestInvalid

_KNOWN = (
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "text",
    "max_output_tokens",
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "stream",
    "store",
    "metadata",
    "user",
    "truncation",
)


def _invalid(message: str, param: str | None = None) -> CompletionRequestInvalid:
    return CompletionRequestInvalid(message, param=param)


def _text(content: Any, param: str) -> str:
    """A message's content: a string, or its text parts (input_text, output_text) joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(part, dict)
        and part.get("type") in ("input_text", "output_text", "text")
        and isinstance(part.get("text"), str)
        for part in content
    ):
        return "".join(part["text"] for part in content)
    raise _invalid("must be a string or a list of text parts (input_text, output_text).", param)


def _messages(raw: Any, instructions: Any) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if instructions is not None:
        messages.append({"role": "system", "content": _text(instructions, "instructions")})
    if isinstance(raw, str):
        return [*messages, {"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise _invalid("must be a string or a non-empty list of items.", "input")
    for index, item in enumerate(raw):
        message = _item(item, f"input[{index}]", previous=messages[-1] if messages else None)
        if message:
            messages.append(message)
    return messages


def _item(item: Any, param: str, *, previous: dict[str, Any] | None) -> dict[str, Any]:
    """One input item as a chat message; a call right after an assistant's calls joins them
    (and leaves an empty placeholder, dropped by the caller)."""
    if not isinstance(item, dict):
        raise _invalid("must be an object.", param)
    kind = item.get("type", "message")
    if kind == "message":
        return {"role": item.get("role"), "content": _text(item.get("content"), f"{param}.content")}
    if kind == "function_call":
        call = {
            "id": item.get("call_id"),
            "type": "function",
            "function": {"name": item.get("name"), "arguments": item.get("arguments")},
        }
        if previous and previous.get("role") == "assistant" and previous.get("tool_calls") is not None:
            previous["tool_calls"].append(call)
            return {}
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    if kind == "function_call_output":
        output = item.get("output")
        return {
            "role": "tool",
            "tool_call_id": item.get("call_id"),
            "content": output if isinstance(output, str) else _text(output, f"{param}.output"),
        }
    raise _invalid(f"items of type '{kind}' are not supported.", param)


def _tools(raw: Any) -> list[dict[str, Any]] | None:
    if raw is None or raw == []:
        return None
    if not isinstance(raw, list):
        raise _invalid("must be a list of function tools.", "tools")
    tools = []
    for index, tool in enumerate(raw):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise _invalid(f"only function tools are supported, not '{kind}'.", f"tools[{index}]")
        function = {key: tool[key] for key in ("name", "description", "parameters", "strict") if key in tool}
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(raw: Any) -> Any:
    if isinstance(raw, dict) and raw.get("type") == "function":
        return {"type": "function", "function": {"name": raw.get("name")}}
    return raw


def _response_format(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    form = text.get("format") if isinstance(text, dict) else None
    if not isinstance(form, dict):
        if isinstance(text, dict) and "format" not in text:
            return None
        raise _invalid("must be an object with a format.", "text")
    if form.get("type") != "json_schema":
        return form
    spec = {key: form[key] for key in ("name", "description", "schema", "strict") if key in form}
    return {"type": "json_schema", "json_schema": spec}


def responses_request_parse(body: Any, *, request_id: str) -> CompletionRequest:
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.")
    for name in body:
        if name not in _KNOWN:
            raise _invalid(f"Unrecognized request argument supplied: {name}", name)
    if body.get("store") not in (None, False):
        raise _invalid("Responses are not stored here: send store false (or leave it out).", "store")
    if "input" not in body:
        raise _invalid("you must provide an input.", "input")
    chat: dict[str, Any] = {
        "model": body.get("model"),
        "messages": _messages(body["input"], body.get("instructions")),
        "max_tokens": body.get("max_output_tokens"),
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "stream": body.get("stream", False),
        "tools": _tools(body.get("tools")),
        "tool_choice": _tool_choice(body.get("tool_choice")),
        "parallel_tool_calls": body.get("parallel_tool_calls"),
        "response_format": _response_format(body.get("text")),
    }
    try:
        request = completion_request_parse(
            {name: value for name, value in chat.items() if value is not None}, request_id=request_id
        )
    except CompletionRequestInvalid as invalid:
        # Named as the Responses request names it: a tool's fields are its own, not a function's.
        param = (invalid.param or "").replace(".function.", ".").replace("response_format", "text.format")
        raise _invalid(
            invalid.message.replace("'max_tokens'", "'max_output_tokens'"), param or None
        ) from None
    echo = {
        "instructions": body.get("instructions"),
        "tools": body.get("tools") or [],
        "tool_choice": body.get("tool_choice") or "auto",
        "text": body.get("text") or {"format": {"type": "text"}},
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "max_output_tokens": body.get("max_output_tokens"),
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "metadata": body.get("metadata") or {},
    }
    return replace(request, echo=echo)
