"""PATCH operations on a Group (`scim.patch` reads them and says what is refused). Okta and
Entra ID send, among others:

- `{"op": "add", "path": "members", "value": [{"value": "<user id>"}]}`;
- `{"op": "remove", "path": "members[value eq \\"<user id>\\"]"}`, and `remove` with path
  `members` and the members as the value (without a value: every SCIM member);
- `{"op": "replace", "path": "members", "value": [...]}`;
- `{"op": "replace", "value": {"id": "<group id>", "displayName": "..."}}` (a rename).
"""

import re
from collections.abc import Callable
from dataclasses import replace

from scim.documents import GROUP_SCHEMA
from scim.errors import invalid_path, invalid_value, mutability
from scim.patch import (
    QUOTED,
    READ_ONLY,
    PatchOperation,
    each_attribute,
    external_id_patch,
    path_without_schema,
)
from scim.payloads import (
    MAX_DISPLAY_NAME,
    GroupAttributes,
    member_ids_of,
    scim_id_canonical,
    text_value,
)

_MEMBER_PATH = re.compile(rf"members\[\s*value\s+eq\s+(?P<id>{QUOTED})\s*\]", re.IGNORECASE)

_Handler = Callable[[GroupAttributes, PatchOperation, str], GroupAttributes]


def group_patch_apply(
    attributes: GroupAttributes, operations: list[PatchOperation], *, group_id: str
) -> GroupAttributes:
    """`attributes` (with `member_ids` set) after `operations` on the group `group_id`, in
    order. Raises ScimError (400) for the first operation that cannot be applied."""

    def apply(state: GroupAttributes, operation: PatchOperation) -> GroupAttributes:
        if operation.path is None:
            return each_attribute(state, operation, apply)
        path = path_without_schema(operation.path, GROUP_SCHEMA)
        member_path = _MEMBER_PATH.fullmatch(path)
        if member_path is not None:
            return _member_path(state, operation, member_path)
        handler = _HANDLERS.get(path.lower())
        if handler is not None:
            return handler(state, operation, path)
        value = operation.value
        if path.lower() == "id" and isinstance(value, str) and scim_id_canonical(value) == group_id:
            return state  # Okta repeats the group's id in a replace
        if path.lower().split(".")[0] in READ_ONLY:
            raise mutability(f"{operation.where}: {path} is read-only.")
        raise invalid_path(f"{operation.where}: {path!r} is not an attribute of a Group.")

    for operation in operations:
        attributes = apply(attributes, operation)
    return attributes


def _member_path(state: GroupAttributes, operation: PatchOperation, path: re.Match[str]) -> GroupAttributes:
    if operation.op != "remove":
        raise invalid_path(f'{operation.where}: use "add" with the path "members" to add members.')
    member = scim_id_canonical(text_value("members.value", path["id"][1:-1], limit=64))
    return replace(state, member_ids=(state.member_ids or frozenset()) - {member})


def _members(state: GroupAttributes, operation: PatchOperation, path: str) -> GroupAttributes:
    members = state.member_ids or frozenset()
    given = member_ids_of(operation.value)
    if operation.op == "add":
        return replace(state, member_ids=members | given)
    if operation.op == "replace":
        return replace(state, member_ids=given)
    return replace(state, member_ids=members - given if operation.value is not None else frozenset())


def _display_name(state: GroupAttributes, operation: PatchOperation, path: str) -> GroupAttributes:
    if operation.op == "remove":
        raise invalid_value(f"{operation.where}: displayName is required and cannot be removed.")
    text = text_value("displayName", operation.value, limit=MAX_DISPLAY_NAME, required=True)
    return replace(state, display_name=text)


_HANDLERS: dict[str, _Handler] = {
    "members": _members,
    "displayname": _display_name,
    "externalid": external_id_patch,
}
