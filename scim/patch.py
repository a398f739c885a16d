"""PATCH requests (RFC 7644 §3.5.2): the PatchOp body read into operations.

The operations are then applied to a copy of the resource's attributes (`scim.user_patch`,
`scim.group_patch`), every one checked before anything is written; the service writes the
result in one transaction, so a request with one bad operation changes nothing. Covered:
`add`, `replace` and `remove` (in any letter case) with a path, and `add`/`replace` without
one (the value is then an object of attributes), as Okta and Entra ID send them.

Refused with 400 and the operation's position (`Operations[2]: ...`): a body that is not a
PatchOp (invalidSyntax), a path that is no attribute (invalidPath), a read-only attribute
(mutability), a value of the wrong type (invalidValue), and a filtered path that matches
nothing (noTarget).
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from scim.documents import PATCH_OP_SCHEMA
from scim.errors import invalid_path, invalid_syntax, invalid_value, no_target
from scim.payloads import MAX_EXTERNAL_ID, GroupAttributes, UserAttributes, text_value

MAX_OPERATIONS = 200
_OPS = ("add", "replace", "remove")
# A quoted string of a filter, as in `members[value eq "..."]`.
QUOTED = r'"(?:[^"\\]|\\.)*"'
# Attributes that no request may set (RFC 7643: mutability readOnly).
READ_ONLY = frozenset({"id", "meta", "groups", "schemas"})


@dataclass(frozen=True)
class PatchOperation:
    op: str  # add, replace or remove
    path: str | None
    value: Any
    where: str  # "Operations[1]", for messages


def patch_operations_parse(body: Any) -> list[PatchOperation]:
    """The operations of a PatchOp body. Raises ScimError (invalidSyntax, invalidPath,
    invalidValue) when it is not one."""
    if not isinstance(body, dict):
        raise invalid_syntax("The request body must be a JSON object.")
    fields = {str(key).lower(): value for key, value in body.items()}
    schemas = fields.get("schemas")
    if not isinstance(schemas, list) or PATCH_OP_SCHEMA.lower() not in {str(s).lower() for s in schemas}:
        raise invalid_syntax(f'"schemas" must be a list that includes "{PATCH_OP_SCHEMA}".')
    raw = fields.get("operations")
    if not isinstance(raw, list) or not raw:
        raise invalid_syntax('"Operations" must be a list of one or more operations.')
    if len(raw) > MAX_OPERATIONS:
        raise invalid_syntax(f'"Operations" may hold at most {MAX_OPERATIONS} operations.')
    return [_operation(entry, f"Operations[{position}]") for position, entry in enumerate(raw)]


def _operation(entry: Any, where: str) -> PatchOperation:
    if not isinstance(entry, dict):
        raise invalid_syntax(f"{where} must be an object with op, path and value.")
    lowered = {str(key).lower(): value for key, value in entry.items()}
    op = lowered.get("op")
    if not isinstance(op, str) or op.lower() not in _OPS:
        raise invalid_syntax(f'{where}: "op" must be "add", "replace" or "remove".')
    path = lowered.get("path")
    if path is not None and (not isinstance(path, str) or not path.strip()):
        raise invalid_path(f'{where}: "path" must be a non-empty string.')
    if op.lower() != "remove" and "value" not in lowered:
        raise invalid_value(f"{where}: {op.lower()} needs a value.")
    return PatchOperation(op.lower(), path.strip() if path else None, lowered.get("value"), where)


def path_without_schema(path: str, schema: str) -> str:
    """`path` without the schema URN in front of it (`urn:...:User:userName` -> `userName`)."""
    prefix = schema + ":"
    return path[len(prefix) :] if path.lower().startswith(prefix.lower()) else path


_S = TypeVar("_S")


def each_attribute(state: _S, operation: PatchOperation, apply: Callable[[_S, PatchOperation], _S]) -> _S:
    """An operation without a path: its value is an object of attributes (or of paths, as
    Entra ID sends), each applied in turn as if it were the path."""
    if operation.op == "remove":
        raise no_target(f"{operation.where}: remove needs a path.")
    if not isinstance(operation.value, dict):
        raise invalid_value(f"{operation.where}: without a path, the value must be an object of attributes.")
    for key, item in operation.value.items():
        state = apply(state, replace(operation, path=str(key), value=item))
    return state


_Resource = TypeVar("_Resource", UserAttributes, GroupAttributes)


def external_id_patch(state: _Resource, operation: PatchOperation, path: str) -> _Resource:
    """`externalId`, the same on a User and a Group: add and replace set it, remove clears it.
    Raises ScimError (invalidValue) for a value that is not a string within MAX_EXTERNAL_ID."""
    text = (
        "" if operation.op == "remove" else text_value("externalId", operation.value, limit=MAX_EXTERNAL_ID)
    )
    return replace(state, external_id=text)
