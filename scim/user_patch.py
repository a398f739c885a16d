"""PATCH operations on a User's kept attributes (`scim.patch` reads them and says what is
refused). Okta and Entra ID send, among others:

- `{"op": "replace", "value": {"active": false}}` and `{"op": "replace", "path": "active",
  "value": false}` (also `"False"`, a string some providers send);
- `name.givenName`, `name.familyName`, `userName`, `externalId`;
- `emails[type eq "work"].value`: the one address kept is the work and primary one; a path
  to another type of address (home, say) is accepted and not stored.

Attributes Gatehouse does not keep (`displayName`, `title`, `phoneNumbers`, the enterprise
extension, `password`, ...) are accepted and not stored.
"""

import re
from collections.abc import Callable
from dataclasses import replace

from scim.documents import ENTERPRISE_USER_SCHEMA, USER_SCHEMA
from scim.errors import invalid_path, invalid_value, mutability, no_target
from scim.patch import (
    QUOTED,
    READ_ONLY,
    PatchOperation,
    each_attribute,
    external_id_patch,
    path_without_schema,
)
from scim.payloads import (
    MAX_NAME_PART,
    MAX_USER_NAME,
    UserAttributes,
    boolean_value,
    email_of,
    name_parts,
    text_value,
)

MAX_EMAIL = 254
# Core User attributes Gatehouse does not keep: accepted, not stored.
IGNORED_USER_ATTRIBUTES = frozenset(
    {
        "displayname", "nickname", "profileurl", "title", "usertype", "preferredlanguage", "locale",
        "timezone", "phonenumbers", "ims", "photos", "addresses", "entitlements", "roles",
        "x509certificates", "password", "name.formatted", "name.middlename", "name.honorificprefix",
        "name.honorificsuffix",
    }
)  # fmt: skip
_EMAIL_PATH = re.compile(r"emails\[(?P<filter>.*)\](?:\.(?P<sub>[A-Za-z]+))?", re.IGNORECASE)
_EMAIL_CONDITION = re.compile(
    rf"\s*(?P<attribute>type|primary|value)\s+eq\s+(?P<value>{QUOTED}|true|false)\s*", re.IGNORECASE
)

_Handler = Callable[[UserAttributes, PatchOperation, str], UserAttributes]


def user_patch_apply(attributes: UserAttributes, operations: list[PatchOperation]) -> UserAttributes:
    """`attributes` (with `active` set) after `operations`, in order. Raises ScimError (400)
    for the first operation that cannot be applied."""
    for operation in operations:
        attributes = _apply(attributes, operation)
    return attributes


def _apply(state: UserAttributes, operation: PatchOperation) -> UserAttributes:
    if operation.path is None:
        return each_attribute(state, operation, _apply)
    if operation.path.lower().startswith(ENTERPRISE_USER_SCHEMA.lower()):
        return state  # the enterprise extension is not kept
    path = path_without_schema(operation.path, USER_SCHEMA)
    email_path = _EMAIL_PATH.fullmatch(path)
    if email_path is not None:
        return _email_path(state, operation, email_path)
    handler = _HANDLERS.get(path.lower())
    if handler is not None:
        return handler(state, operation, path)
    root = re.split(r"[.\[]", path.lower(), maxsplit=1)[0]
    if root in READ_ONLY:
        raise mutability(f"{operation.where}: {path} is read-only.")
    if path.lower() in IGNORED_USER_ATTRIBUTES or root in IGNORED_USER_ATTRIBUTES:
        return state
    raise invalid_path(f"{operation.where}: {path!r} is not an attribute of a User.")


def _user_name(state: UserAttributes, operation: PatchOperation, path: str) -> UserAttributes:
    if operation.op == "remove":
        raise invalid_value(f"{operation.where}: userName is required and cannot be removed.")
    return replace(
        state, user_name=text_value("userName", operation.value, limit=MAX_USER_NAME, required=True)
    )


def _name(state: UserAttributes, operation: PatchOperation, path: str) -> UserAttributes:
    """`name`: replace sets both parts (one it omits is cleared), add only those it gives."""
    given, family = ("", "") if operation.op == "remove" else name_parts(operation.value)
    if operation.op == "replace":
        given, family = given or "", family or ""
    return replace(
        state,
        given_name=state.given_name if given is None else given,
        family_name=state.family_name if family is None else family,
    )


def _name_part(state: UserAttributes, operation: PatchOperation, path: str) -> UserAttributes:
    text = "" if operation.op == "remove" else text_value(path, operation.value, limit=MAX_NAME_PART)
    if path.lower() == "name.givenname":
        return replace(state, given_name=text)
    return replace(state, family_name=text)


def _emails(state: UserAttributes, operation: PatchOperation, path: str) -> UserAttributes:
    value = operation.value
    if operation.op == "remove":
        if value is None:
            return replace(state, email="")
        removed = email_of(value if isinstance(value, list) else [value])
        return replace(state, email="") if state.email.lower() == removed.lower() else state
    if isinstance(value, str):
        return replace(state, email=text_value("emails.value", value, limit=MAX_EMAIL))
    return replace(state, email=email_of(value if isinstance(value, list) else [value]))


def _active(state: UserAttributes, operation: PatchOperation, path: str) -> UserAttributes:
    if operation.op == "remove":
        raise invalid_value(f"{operation.where}: active cannot be removed; set it to true or false.")
    return replace(state, active=boolean_value("active", operation.value))


_HANDLERS: dict[str, _Handler] = {
    "username": _user_name,
    "name": _name,
    "name.givenname": _name_part,
    "name.familyname": _name_part,
    "emails": _emails,
    "emails.value": _emails,
    "active": _active,
    "externalid": external_id_patch,
}


def _email_filter(operation: PatchOperation, text: str) -> tuple[bool, str | None]:
    """(whether the filter is about the address kept, the address it names if any)."""
    ours, named = True, None
    for condition in re.split(r"\s+and\s+", text, flags=re.IGNORECASE):
        matched = _EMAIL_CONDITION.fullmatch(condition)
        if matched is None:
            raise invalid_path(
                f"{operation.where}: {operation.path!r} is not a filter on emails this server reads."
            )
        attribute, literal = matched["attribute"].lower(), matched["value"]
        value = literal[1:-1] if literal.startswith('"') else literal.lower()
        if attribute == "type":
            ours = ours and value.lower() == "work"
        elif attribute == "primary":
            ours = ours and value == "true"
        else:
            named = value
    return ours, named


def _email_path(state: UserAttributes, operation: PatchOperation, path: re.Match[str]) -> UserAttributes:
    """`emails[<filter>]` or `emails[<filter>].value`."""
    ours, named = _email_filter(operation, path["filter"])
    sub = (path["sub"] or "").lower()
    if not ours or sub not in ("", "value"):
        return state  # another address, or its type or display: not kept
    matches = named is None or named.lower() == state.email.lower()
    if operation.op == "remove":
        return replace(state, email="") if matches else state
    if not matches:
        raise no_target(f"{operation.where}: no email matches {operation.path!r}.")
    value = operation.value
    if sub == "" and isinstance(value, dict):
        value = {str(key).lower(): item for key, item in value.items()}.get("value")
    return replace(state, email=text_value("emails.value", value, limit=MAX_EMAIL))
