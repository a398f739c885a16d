"""Request bodies of POST and PUT read into what Gatehouse keeps (RFC 7643 §4).

Kept for a User: userName, name.givenName, name.familyName, one email (the primary, else the
first), active, externalId. For a Group: displayName, externalId, members. Attribute names
are case-insensitive. Refused with 400, saying which attribute and why: a body that is not a
JSON object (invalidSyntax), `schemas` without the resource's core schema (invalidSyntax),
a missing userName or displayName, and a value of the wrong type (invalidValue).

Accepted and not stored: `password` (provisioned people sign in with single sign-on and
keep an unusable password), read-only attributes (`id`, `meta`, `groups`), and the other
attributes of the core and enterprise schemas (`displayName` of a user, `title`,
`phoneNumbers`, `addresses`, ...), which identity providers send by default.
"""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scim.documents import GROUP_SCHEMA, USER_SCHEMA
from scim.errors import invalid_syntax, invalid_value

# Django's limits on these fields, checked here so the message names the SCIM attribute.
MAX_USER_NAME = 150
MAX_NAME_PART = 150
MAX_EXTERNAL_ID = 255
MAX_DISPLAY_NAME = 255


@dataclass(frozen=True)
class UserAttributes:
    """A User as Gatehouse keeps it. `active` None: not said (a PUT keeps the current state,
    never deactivating by omission; a POST creates an active user)."""

    user_name: str
    given_name: str = ""
    family_name: str = ""
    email: str = ""
    external_id: str = ""
    active: bool | None = None


@dataclass(frozen=True)
class GroupAttributes:
    """A Group as Gatehouse keeps it. `member_ids`: SCIM ids of users, None when not said (a
    PUT without `members` leaves them as they are)."""

    display_name: str
    external_id: str = ""
    member_ids: frozenset[str] | None = None


def _lowered(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid_syntax("The request body must be a JSON object.")
    return {str(key).lower(): value for key, value in body.items()}


def _schemas_check(fields: Mapping[str, Any], schema: str, resource: str) -> None:
    schemas = fields.get("schemas")
    if not isinstance(schemas, list) or schema.lower() not in {str(s).lower() for s in schemas}:
        raise invalid_syntax(f'"schemas" must be a list that includes "{schema}" for a {resource}.')


def text_value(name: str, value: Any, *, limit: int, required: bool = False) -> str:
    """`value` as the text of attribute `name`: a string of at most `limit` characters; null
    is empty. Raises ScimError (invalidValue) for another type, or for empty text when
    `required`."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise invalid_value(f"{name} must be a string.")
    text: str = value.strip()
    if required and not text:
        raise invalid_value(f"{name} is required and must not be empty.")
    if len(text) > limit:
        raise invalid_value(f"{name} is longer than {limit} characters.")
    return text


def boolean_value(name: str, value: Any) -> bool:
    """true or false; the strings "True" and "False" too, which some identity providers send."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise invalid_value(f"{name} must be true or false.")


def name_parts(value: Any) -> tuple[str | None, str | None]:
    """(givenName, familyName) of a `name` object; None for a part it does not give."""
    if value is None:
        return "", ""
    if not isinstance(value, dict):
        raise invalid_value("name must be an object with givenName and familyName.")
    parts = {str(key).lower(): part for key, part in value.items()}
    given = (
        text_value("name.givenName", parts["givenname"], limit=MAX_NAME_PART)
        if "givenname" in parts
        else None
    )
    family = (
        text_value("name.familyName", parts["familyname"], limit=MAX_NAME_PART)
        if "familyname" in parts
        else None
    )
    return given, family


def email_of(value: Any) -> str:
    """The address kept from an `emails` list: the primary one, else the first; none is empty."""
    if value is None:
        return ""
    if not isinstance(value, list) or not all(isinstance(entry, dict) for entry in value):
        raise invalid_value('emails must be a list of objects such as {"value": "a@example.com"}.')
    entries = [{str(key).lower(): item for key, item in entry.items()} for entry in value]
    chosen = next(
        (entry for entry in entries if entry.get("primary") is True), entries[0] if entries else None
    )
    if chosen is None:
        return ""
    return text_value("emails.value", chosen.get("value"), limit=254)


def member_ids_of(value: Any) -> frozenset[str]:
    """The SCIM ids in a `members` list of {"value": id} objects."""
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(entry, dict) for entry in value):
        raise invalid_value('members must be a list of objects such as {"value": "<user id>"}.')
    ids = []
    for entry in value:
        lowered = {str(key).lower(): item for key, item in entry.items()}
        ids.append(
            scim_id_canonical(text_value("members.value", lowered.get("value"), limit=64, required=True))
        )
    return frozenset(ids)


def scim_id_canonical(raw: str) -> str:
    """A SCIM id as this server writes it (a UUID in lower case), or `raw` when it is not one."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        return raw


def user_attributes_parse(body: Any) -> UserAttributes:
    """A POST or PUT body as a User. Raises ScimError as the module says."""
    fields = _lowered(body)
    _schemas_check(fields, USER_SCHEMA, "User")
    given, family = name_parts(fields.get("name"))
    return UserAttributes(
        user_name=text_value("userName", fields.get("username"), limit=MAX_USER_NAME, required=True),
        given_name=given or "",
        family_name=family or "",
        email=email_of(fields.get("emails")),
        external_id=text_value("externalId", fields.get("externalid"), limit=MAX_EXTERNAL_ID),
        active=boolean_value("active", fields["active"]) if fields.get("active") is not None else None,
    )


def group_attributes_parse(body: Any) -> GroupAttributes:
    """A POST or PUT body as a Group. Raises ScimError as the module says."""
    fields = _lowered(body)
    _schemas_check(fields, GROUP_SCHEMA, "Group")
    return GroupAttributes(
        display_name=text_value(
            "displayName", fields.get("displayname"), limit=MAX_DISPLAY_NAME, required=True
        ),
        external_id=text_value("externalId", fields.get("externalid"), limit=MAX_EXTERNAL_ID),
        member_ids=member_ids_of(fields["members"]) if "members" in fields else None,
    )
