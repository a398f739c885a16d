"""Discovery endpoints, media types and SCIM's error shape for what matches no resource."""

import json

from scim.documents import GROUP_SCHEMA, USER_SCHEMA
from tests.scim.helpers import SCIM, USERS, ScimClient, scim_error, user_body


def test_service_provider_config_says_what_is_supported(scim: ScimClient) -> None:
    response = scim.get("/scim/v2/ServiceProviderConfig")
    assert response.status_code == 200
    assert response["Content-Type"].startswith(SCIM)
    config = response.json()
    assert config["patch"] == {"supported": True}
    assert config["filter"] == {"supported": True, "maxResults": 100}
    assert config["bulk"]["supported"] is False
    assert config["changePassword"] == {"supported": False}
    assert config["sort"] == {"supported": False}
    assert config["etag"] == {"supported": False}
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"


def test_resource_types_and_schemas_describe_users_and_groups(scim: ScimClient) -> None:
    types = scim.get("/scim/v2/ResourceTypes").json()
    assert types["totalResults"] == 2
    assert {(entry["name"], entry["endpoint"], entry["schema"]) for entry in types["Resources"]} == {
        ("User", "/Users", USER_SCHEMA),
        ("Group", "/Groups", GROUP_SCHEMA),
    }
    schemas = scim.get("/scim/v2/Schemas").json()
    user = next(schema for schema in schemas["Resources"] if schema["id"] == USER_SCHEMA)
    names = {attribute["name"] for attribute in user["attributes"]}
    assert {"userName", "name", "emails", "active", "groups", "password"} <= names
    password = next(attribute for attribute in user["attributes"] if attribute["name"] == "password")
    assert password["returned"] == "never"


def test_responses_are_scim_json_whatever_accept_says_and_json_bodies_are_read(scim: ScimClient) -> None:
    response = scim.http.get(USERS, HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith(SCIM)
    created = scim.raw("post", USERS, json.dumps(user_body("dana")), content_type="application/json")
    assert created.status_code == 201, created.content
    wrong_type = scim.raw("post", USERS, "userName=x", content_type="text/plain")
    scim_error(wrong_type, 415)


def test_an_unknown_path_is_a_scim_404(scim: ScimClient) -> None:
    scim_error(scim.get("/scim/v2/Nothing"), 404)
    scim_error(scim.get("/scim/v2/Users/"), 404)
    scim_error(scim.get("/scim/v2/Bulk"), 404)


def test_a_unique_constraint_lost_to_a_concurrent_request_is_a_409() -> None:
    from django.db import IntegrityError

    from scim.errors import scim_exception_handler

    response = scim_exception_handler(IntegrityError("duplicate key"), {})
    assert response is not None
    assert (response.status_code, response.data["scimType"]) == (409, "uniqueness")
    assert "duplicate key" not in response.data["detail"]
