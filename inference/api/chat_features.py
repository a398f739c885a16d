"""Tools and structured outputs in a chat completion request, validated as OpenAI validates them.

    tools                a list of functions: a name (letters, digits, _ and -, at most 64),
                         a description, a JSON schema for the parameters, `strict`
    tool_choice          none | auto | required | {"type": "function", "function": {"name"}}
    parallel_tool_calls  a boolean
    response_format      text | json_object | json_schema (a name, a schema, `strict`)
    messages             an assistant's `tool_calls`, `tool` results naming their call

A schema marked `strict` may use only the keywords OpenAI's strict mode accepts, every object
listing all its properties as required and setting `additionalProperties` to false; anything
else is refused here, naming the keyword and where it is. Non-strict schemas are the upstream's
to judge.
"""

import re
from typing import Any

import orjson

from inference.api.request_invalid import CompletionRequestInvalid
from inference.engines.base import ChatFeatures

MAX_TOOLS = 128
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_SCHEMA_DEPTH = 10
MAX_SCHEMA_PROPERTIES = 5000
_STRICT_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "enum", "const", "anyOf",
        "$defs", "definitions", "$ref", "description", "title", "items", "minLength", "maxLength",
        "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
        "multipleOf", "minItems", "maxItems",
    }
)  # fmt: skip
_STRICT_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_STRICT_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
)
# Request fields this module reads; the rest of the body is completion_request's.
FIELDS = ("tools", "tool_choice", "parallel_tool_calls", "response_format")


def _invalid(message: str, param: str) -> CompletionRequestInvalid:
    return CompletionRequestInvalid(message, param=param)


def _name(value: Any, param: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise _invalid("must be 1 to 64 letters, digits, underscores or dashes.", param)
    return value


def _tools(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_TOOLS:
        raise _invalid(f"must be a list of 1 to {MAX_TOOLS} tools.", "tools")
    tools, seen = [], set()
    for position, tool in enumerate(raw):
        where = f"tools[{position}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise _invalid("must be an object of type 'function'.", where)
        function = tool.get("function")
        if not isinstance(function, dict):
            raise _invalid("must be an object.", f"{where}.function")
        name = _name(function.get("name"), f"{where}.function.name")
        if name in seen:
            raise _invalid(f"the name '{name}' is used by another tool.", f"{where}.function.name")
        seen.add(name)
        kept: dict[str, Any] = {"name": name}
        if (description := function.get("description")) is not None:
            if not isinstance(description, str):
                raise _invalid("must be a string.", f"{where}.function.description")
            kept["description"] = description
        strict = function.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise _invalid("must be a boolean.", f"{where}.function.strict")
        if (parameters := function.get("parameters")) is not None:
            if not isinstance(parameters, dict):
                raise _invalid("must be a JSON schema object.", f"{where}.function.parameters")
            if strict:
                strict_schema_check(parameters, param=f"{where}.function.parameters")
            kept["parameters"] = parameters
        if strict is not None:
            kept["strict"] = strict
        tools.append({"type": "function", "function": kept})
    return tools


def _tool_choice(raw: Any, names: frozenset[str]) -> Any:
    if raw in ("none", "auto", "required"):
        if raw != "none" and not names:
            raise _invalid(f"'{raw}' needs tools.", "tool_choice")
        return raw
    function = raw.get("function") if isinstance(raw, dict) and raw.get("type") == "function" else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise _invalid(
            'must be \'none\', \'auto\', \'required\' or {"type": "function", "function": {"name": ...}}.',
            "tool_choice",
        )
    if function["name"] not in names:
        raise _invalid(f"names '{function['name']}', which is not one of the tools.", "tool_choice")
    return {"type": "function", "function": {"name": function["name"]}}


def _response_format(raw: Any) -> dict[str, Any] | None:
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "json_schema":
        raise _invalid("type must be 'text', 'json_object' or 'json_schema'.", "response_format")
    spec = raw.get("json_schema")
    if not isinstance(spec, dict):
        raise _invalid("must be an object with a name and a schema.", "response_format.json_schema")
    kept: dict[str, Any] = {"name": _name(spec.get("name"), "response_format.json_schema.name")}
    if (description := spec.get("description")) is not None:
        if not isinstance(description, str):
            raise _invalid("must be a string.", "response_format.json_schema.description")
        kept["description"] = description
    schema, strict = spec.get("schema"), spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise _invalid("must be a boolean.", "response_format.json_schema.strict")
    if schema is not None:
        if not isinstance(schema, dict):
            raise _invalid("must be a JSON schema object.", "response_format.json_schema.schema")
        if strict:
            strict_schema_check(schema, param="response_format.json_schema.schema")
        kept["schema"] = schema
    if strict is not None:
        kept["strict"] = strict
    return {"type": "json_schema", "json_schema": kept}


def strict_schema_check(schema: dict[str, Any], *, param: str) -> None:
    """Refuse what OpenAI's strict mode refuses; the message names the keyword and its place."""
    if schema.get("type") != "object":
        raise _invalid("a strict schema's root must be of type 'object'.", param)
    definitions = {
        name: child
        for group in ("$defs", "definitions")
        if isinstance(schema.get(group), dict)
        for name, child in schema[group].items()
    }
    counted = _StrictWalk(param=param, definitions=definitions)
    counted.walk(schema, path="#", depth=0)


class _StrictWalk:
    def __init__(self, *, param: str, definitions: dict[str, Any]) -> None:
        self.param = param
        self.definitions = definitions
        self.properties = 0

    def _fail(self, message: str, path: str) -> CompletionRequestInvalid:
        return _invalid(f"{message} (at {path}).", self.param)

    def walk(self, node: Any, *, path: str, depth: int) -> None:
        if not isinstance(node, dict):
            raise self._fail("a schema must be an object", path)
        if depth > MAX_SCHEMA_DEPTH:
            raise self._fail(f"schemas may nest at most {MAX_SCHEMA_DEPTH} levels deep", path)
        for keyword in node:
            if keyword not in _STRICT_KEYWORDS:
                raise self._fail(f"'{keyword}' is not supported in strict mode", path)
        self._type(node, path)
        if "$ref" in node:
            self._ref(node["$ref"], path)
        if (form := node.get("format")) is not None and form not in _STRICT_FORMATS:
            raise self._fail(f"the format '{form}' is not supported in strict mode", path)
        if "properties" in node or node.get("type") == "object":
            self._object(node, path=path, depth=depth)
        for child_path, child in self._children(node, path):
            self.walk(child, path=child_path, depth=depth + 1)

    def _children(self, node: dict[str, Any], path: str) -> list[tuple[str, Any]]:
        """The schemas inside `node` other than its properties: items, anyOf's branches, $defs."""
        children = [(f"{path}/items", node["items"])] if "items" in node else []
        if "anyOf" in node:
            branches = node["anyOf"]
            if not isinstance(branches, list) or not branches:
                raise self._fail("'anyOf' must be a non-empty list of schemas", path)
            children += [(f"{path}/anyOf/{index}", branch) for index, branch in enumerate(branches)]
        for group in ("$defs", "definitions"):
            definitions = node.get(group) or {}
            if not isinstance(definitions, dict):
                raise self._fail(f"'{group}' must be an object of schemas", path)
            children += [(f"{path}/{group}/{name}", child) for name, child in definitions.items()]
        return children

    def _type(self, node: dict[str, Any], path: str) -> None:
        kind = node.get("type")
        kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
        for each in kinds:
            if each not in _STRICT_TYPES:
                raise self._fail(f"the type {orjson.dumps(each).decode()} is not supported", path)

    def _ref(self, ref: Any, path: str) -> None:
        if ref == "#":
            return
        for prefix in ("#/$defs/", "#/definitions/"):
            if (
                isinstance(ref, str)
                and ref.startswith(prefix)
                and ref.removeprefix(prefix) in self.definitions
            ):
                return
        raise self._fail(f"'$ref' must point to '#' or into '$defs', not {orjson.dumps(ref).decode()}", path)

    def _object(self, node: dict[str, Any], *, path: str, depth: int) -> None:
        properties = node.get("properties", {})
        if not isinstance(properties, dict):
            raise self._fail("'properties' must be an object", path)
        self.properties += len(properties)
        if self.properties > MAX_SCHEMA_PROPERTIES:
            raise self._fail(f"a strict schema may have at most {MAX_SCHEMA_PROPERTIES} properties", path)
        if node.get("additionalProperties") is not False:
            raise self._fail("every object must set 'additionalProperties' to false in strict mode", path)
        required = node.get("required", [])
        if not isinstance(required, list) or sorted(map(str, required)) != sorted(properties):
            raise self._fail("'required' must list every property in strict mode", path)
        for name, child in properties.items():
            self.walk(child, path=f"{path}/properties/{name}", depth=depth + 1)


def _tool_call(call: Any, where: str) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if (
        not isinstance(call, dict)
        or call.get("type", "function") != "function"
        or not isinstance(call.get("id"), str)
        or not isinstance(function, dict)
        or not isinstance(function.get("name"), str)
        or not isinstance(function.get("arguments"), str)
    ):
        raise _invalid(
            "must be an object with an id, type 'function' and a function's name and arguments (a string).",
            where,
        )
    return {
        "id": call["id"],
        "type": "function",
        "function": {"name": function["name"], "arguments": function["arguments"]},
    }


def _content(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        for part in content
    ):
        return "".join(part["text"] for part in content)
    raise _invalid("must be a string or a list of text parts.", where)


def tool_messages_parse(raw: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A conversation carrying tool calls or results: (what the upstream is sent, verbatim in
    OpenAI's shape; the same as plain role-and-content messages, for counting and storing).

    In the plain version a tool's result is said by the user, and an assistant's calls are
    written out as JSON after its text: the bytes a prompt holds are all there.
    """
    verbatim: list[dict[str, Any]] = []
    plain: list[dict[str, Any]] = []
    for position, message in enumerate(raw):
        where = f"messages[{position}]"
        if not isinstance(message, dict):
            raise _invalid("must be an object.", where)
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise _invalid("a tool message must name the call it answers (tool_call_id).", where)
            content = _content(message.get("content"), f"{where}.content")
            verbatim.append({"role": "tool", "tool_call_id": call_id, "content": content})
            plain.append({"role": "user", "content": content})
        elif role == "assistant" and message.get("tool_calls") is not None:
            calls = message["tool_calls"]
            if not isinstance(calls, list) or not calls:
                raise _invalid("must be a non-empty list.", f"{where}.tool_calls")
            kept = [_tool_call(call, f"{where}.tool_calls[{index}]") for index, call in enumerate(calls)]
            text = "" if message.get("content") is None else _content(message["content"], f"{where}.content")
            verbatim.append({"role": "assistant", "content": text or None, "tool_calls": kept})
            plain.append({"role": "assistant", "content": text + orjson.dumps(kept).decode()})
        else:
            verbatim.append(message)
            plain.append(message)
    return verbatim, plain


def _uses_tools(messages: list[Any]) -> bool:
    return any(
        isinstance(message, dict) and (message.get("role") == "tool" or message.get("tool_calls") is not None)
        for message in messages
    )


def chat_features_parse(body: dict[str, Any]) -> tuple[ChatFeatures | None, Any]:
    """The request's tools and structured output, and its messages as plain role-and-content
    messages (as sent where nothing in them is about tools). None where it asks for neither."""
    fields: dict[str, Any] = {}
    names: frozenset[str] = frozenset()
    if body.get("tools") not in (None, []):
        fields["tools"] = _tools(body["tools"])
        names = frozenset(tool["function"]["name"] for tool in fields["tools"])
    if body.get("tool_choice") is not None:
        choice = _tool_choice(body["tool_choice"], names)
        if choice != "none" or names:
            fields["tool_choice"] = choice
    if body.get("parallel_tool_calls") is not None:
        if not isinstance(body["parallel_tool_calls"], bool):
            raise _invalid("must be a boolean.", "parallel_tool_calls")
        if names:
            fields["parallel_tool_calls"] = body["parallel_tool_calls"]
    if body.get("response_format") is not None:
        response_format = _response_format(body["response_format"])
        if response_format is not None:
            fields["response_format"] = response_format
    messages = body.get("messages")
    verbatim = None
    if isinstance(messages, list) and _uses_tools(messages):
        verbatim, messages = tool_messages_parse(messages)
    if not fields and verbatim is None:
        return None, messages
    return ChatFeatures(fields=fields, messages=verbatim), messages
