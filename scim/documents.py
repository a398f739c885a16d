"""The discovery documents (RFC 7643 §5-§7): what this service provider supports.

They describe exactly the attributes Gatehouse keeps; the others a client may send are
listed in `scim.payloads` (accepted and not stored).
"""

from typing import Any

from django.conf import settings

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_USER_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
LIST_RESPONSE_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_OP_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SERVICE_PROVIDER_CONFIG_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"


def _attribute(
    name: str,
    *,
    kind: str = "string",
    required: bool = False,
    case_exact: bool = False,
    mutability: str = "readWrite",
    returned: str = "default",
    uniqueness: str = "none",
    multi_valued: bool = False,
    sub_attributes: list[dict[str, Any]] | None = None,
    description: str = "",
) -> dict[str, Any]:
    attribute: dict[str, Any] = {
        "name": name,
        "type": kind,
        "multiValued": multi_valued,
        "description": description,
        "required": required,
        "caseExact": case_exact,
        "mutability": mutability,
        "returned": returned,
        "uniqueness": uniqueness,
    }
    if sub_attributes is not None:
        attribute["subAttributes"] = sub_attributes
    return attribute


def _meta(resource_type: str, location: str) -> dict[str, str]:
    return {"resourceType": resource_type, "location": location}


_USER_ATTRIBUTES = [
    _attribute(
        "userName", required=True, uniqueness="server", description="The Gatehouse username (sign-in name)."
    ),
    _attribute(
        "name",
        kind="complex",
        sub_attributes=[_attribute("givenName"), _attribute("familyName")],
        description="Given and family name.",
    ),
    _attribute("displayName", mutability="readOnly", description="Given and family name, else userName."),
    _attribute(
        "emails",
        kind="complex",
        multi_valued=True,
        sub_attributes=[_attribute("value"), _attribute("type"), _attribute("primary", kind="boolean")],
        description="One address is kept: the primary one, else the first.",
    ),
    _attribute("active", kind="boolean", description="false ends every session, key and websocket."),
    _attribute(
        "password",
        mutability="writeOnly",
        returned="never",
        description="Ignored: provisioned people sign in with single sign-on.",
    ),
    _attribute(
        "groups",
        kind="complex",
        multi_valued=True,
        mutability="readOnly",
        sub_attributes=[
            _attribute("value", mutability="readOnly"),
            _attribute("display", mutability="readOnly"),
            _attribute("$ref", kind="reference", mutability="readOnly"),
        ],
        description="The SCIM-provisioned teams the user is in.",
    ),
]

_GROUP_ATTRIBUTES = [
    _attribute("displayName", required=True, uniqueness="server", description="The team is named after it."),
    _attribute(
        "members",
        kind="complex",
        multi_valued=True,
        sub_attributes=[
            _attribute("value", mutability="immutable"),
            _attribute("display", mutability="readOnly"),
            _attribute("$ref", kind="reference", mutability="immutable"),
        ],
        description="SCIM-provisioned users; members added in the console are left alone.",
    ),
]


def schemas_document() -> list[dict[str, Any]]:
    return [
        {
            "schemas": [SCHEMA_SCHEMA],
            "id": USER_SCHEMA,
            "name": "User",
            "description": "A Gatehouse user",
            "attributes": _USER_ATTRIBUTES,
            "meta": _meta("Schema", f"/scim/v2/Schemas/{USER_SCHEMA}"),
        },
        {
            "schemas": [SCHEMA_SCHEMA],
            "id": GROUP_SCHEMA,
            "name": "Group",
            "description": "A Gatehouse team",
            "attributes": _GROUP_ATTRIBUTES,
            "meta": _meta("Schema", f"/scim/v2/Schemas/{GROUP_SCHEMA}"),
        },
    ]


def resource_types_document() -> list[dict[str, Any]]:
    return [
        {
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "Gatehouse users",
            "schema": USER_SCHEMA,
            "schemaExtensions": [],
            "meta": _meta("ResourceType", "/scim/v2/ResourceTypes/User"),
        },
        {
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "Gatehouse teams",
            "schema": GROUP_SCHEMA,
            "schemaExtensions": [],
            "meta": _meta("ResourceType", "/scim/v2/ResourceTypes/Group"),
        },
    ]


def service_provider_config_document() -> dict[str, Any]:
    return {
        "schemas": [SERVICE_PROVIDER_CONFIG_SCHEMA],
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": settings.GATEHOUSE_SCIM_MAX_PAGE_SIZE},
        "changePassword": {"supported": False},
        "sort": {"supported": False},
        "etag": {"supported": False},
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "A SCIM token made with `manage.py scim_token_create NAME`.",
                "primary": True,
            }
        ],
        "meta": _meta("ServiceProviderConfig", "/scim/v2/ServiceProviderConfig"),
    }


def list_response(resources: list[dict[str, Any]], *, total: int, start_index: int) -> dict[str, Any]:
    return {
        "schemas": [LIST_RESPONSE_SCHEMA],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }
