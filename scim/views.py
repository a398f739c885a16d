"""The SCIM 2.0 endpoints (RFC 7644) under /scim/v2/: thin, over `scim.selectors` and
`scim.services`. Every one needs a SCIM token (`scim.authentication`)."""

from typing import Any

from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gatehouse.json_parsing import SafeJSONParser
from scim.authentication import ScimTokenAuthentication, ScimTokenRequired
from scim.documents import (
    list_response,
    resource_types_document,
    schemas_document,
    service_provider_config_document,
)
from scim.errors import not_found, scim_exception_handler
from scim.media import ScimContentNegotiation, ScimJSONParser, ScimJSONRenderer
from scim.models import ScimToken
from scim.patch import patch_operations_parse
from scim.payloads import group_attributes_parse, user_attributes_parse
from scim.representation import attribute_names, group_resource, resource_selected, user_resource
from scim.selectors import page_bounds, scim_group_get, scim_group_list, scim_user_get, scim_user_list
from scim.services import (
    scim_group_create,
    scim_group_delete,
    scim_group_patch,
    scim_group_replace,
    scim_user_create,
    scim_user_deprovision,
    scim_user_patch,
    scim_user_replace,
)


class ScimView(APIView):
    authentication_classes = [ScimTokenAuthentication]
    permission_classes = [ScimTokenRequired]
    parser_classes = [ScimJSONParser, SafeJSONParser]
    renderer_classes = [ScimJSONRenderer]
    content_negotiation_class = ScimContentNegotiation
    throttle_classes = []
    schema = None  # documented in the README, not in the REST API's OpenAPI schema

    def get_exception_handler(self) -> Any:
        return scim_exception_handler

    def base_url(self) -> str:
        return self.request.build_absolute_uri("/scim/v2")

    def token(self) -> ScimToken:
        assert isinstance(self.request.auth, ScimToken)  # noqa: S101 - ScimTokenRequired let it in
        return self.request.auth

    def selection(self) -> dict[str, set[str]]:
        params = self.request.query_params
        return {
            "attributes": attribute_names(params.get("attributes")),
            "excluded": attribute_names(params.get("excludedAttributes")),
        }

    def page(self) -> tuple[str | None, int, int]:
        params = self.request.query_params
        start_index, count = page_bounds(start_index=params.get("startIndex"), count=params.get("count"))
        return params.get("filter"), start_index, count


class UsersView(ScimView):
    def get(self, request: Request) -> Response:
        filter_text, start_index, count = self.page()
        page = scim_user_list(filter_text=filter_text, start_index=start_index, count=count)
        resources = [
            resource_selected(user_resource(link, base_url=self.base_url()), **self.selection())
            for link in page.items
        ]
        return Response(list_response(resources, total=page.total, start_index=page.start_index))

    def post(self, request: Request) -> Response:
        link = scim_user_create(attributes=user_attributes_parse(request.data), token=self.token())
        resource = user_resource(scim_user_get(scim_id=str(link.id)), base_url=self.base_url())
        return Response(
            resource, status=status.HTTP_201_CREATED, headers={"Location": resource["meta"]["location"]}
        )


class UserView(ScimView):
    def _answer(self, scim_id: str) -> Response:
        resource = user_resource(scim_user_get(scim_id=scim_id), base_url=self.base_url())
        return Response(resource_selected(resource, **self.selection()))

    def get(self, request: Request, scim_id: str) -> Response:
        return self._answer(scim_id)

    def put(self, request: Request, scim_id: str) -> Response:
        scim_user_replace(scim_id=scim_id, attributes=user_attributes_parse(request.data), token=self.token())
        return self._answer(scim_id)

    def patch(self, request: Request, scim_id: str) -> Response:
        scim_user_patch(scim_id=scim_id, operations=patch_operations_parse(request.data), token=self.token())
        return self._answer(scim_id)

    def delete(self, request: Request, scim_id: str) -> Response:
        scim_user_deprovision(scim_id=scim_id, token=self.token())
        return Response(status=status.HTTP_204_NO_CONTENT)


class GroupsView(ScimView):
    def get(self, request: Request) -> Response:
        filter_text, start_index, count = self.page()
        selection = self.selection()
        with_members = "members" not in selection["excluded"] and (
            not selection["attributes"] or "members" in selection["attributes"]
        )
        page = scim_group_list(
            filter_text=filter_text, start_index=start_index, count=count, with_members=with_members
        )
        resources = [
            resource_selected(
                group_resource(link, base_url=self.base_url(), with_members=with_members), **selection
            )
            for link in page.items
        ]
        return Response(list_response(resources, total=page.total, start_index=page.start_index))

    def post(self, request: Request) -> Response:
        link = scim_group_create(attributes=group_attributes_parse(request.data), token=self.token())
        resource = group_resource(scim_group_get(scim_id=str(link.id)), base_url=self.base_url())
        return Response(
            resource, status=status.HTTP_201_CREATED, headers={"Location": resource["meta"]["location"]}
        )


class GroupView(ScimView):
    def _answer(self, scim_id: str) -> Response:
        selection = self.selection()
        with_members = "members" not in selection["excluded"] and (
            not selection["attributes"] or "members" in selection["attributes"]
        )
        link = scim_group_get(scim_id=scim_id, with_members=with_members)
        resource = group_resource(link, base_url=self.base_url(), with_members=with_members)
        return Response(resource_selected(resource, **selection))

    def get(self, request: Request, scim_id: str) -> Response:
        return self._answer(scim_id)

    def put(self, request: Request, scim_id: str) -> Response:
        scim_group_replace(
            scim_id=scim_id, attributes=group_attributes_parse(request.data), token=self.token()
        )
        return self._answer(scim_id)

    def patch(self, request: Request, scim_id: str) -> Response:
        scim_group_patch(scim_id=scim_id, operations=patch_operations_parse(request.data), token=self.token())
        return self._answer(scim_id)

    def delete(self, request: Request, scim_id: str) -> Response:
        scim_group_delete(scim_id=scim_id, token=self.token())
        return Response(status=status.HTTP_204_NO_CONTENT)


class ServiceProviderConfigView(ScimView):
    def get(self, request: Request) -> Response:
        return Response(service_provider_config_document())


class ResourceTypesView(ScimView):
    def get(self, request: Request) -> Response:
        types = resource_types_document()
        return Response(list_response(types, total=len(types), start_index=1))


class SchemasView(ScimView):
    def get(self, request: Request) -> Response:
        schemas = schemas_document()
        return Response(list_response(schemas, total=len(schemas), start_index=1))


class UnknownPathView(ScimView):
    """Any other path under /scim/v2/: a SCIM 404, once the token is checked."""

    def get(self, request: Request, rest: str) -> Response:
        raise not_found("resource")

    post = put = patch = delete = get
