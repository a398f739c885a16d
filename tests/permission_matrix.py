"""A reusable permission-matrix test mixin: one subclass per endpoint.

Each subclass names a request and the status every persona must get. The mixin runs the
request as each persona (anonymous; alice the admin; bob a member holding a grant on
`granted-model`; dave a member without one; carol an auditor), and a guard test fails
when a route under /api/ or /v1/ has no matrix, so new endpoints cannot skip it.
"""

from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiKey, User
from accounts.roles import Role
from accounts.services import api_key_create, user_create
from inference.models import Conversation
from inference.services import model_access_grant, model_register
from tests.accounts.helpers import bearer_client, login
from tests.conftest import PASSWORD

PERSONAS = ("anonymous", "alice", "bob", "dave", "carol")
COVERED_ROUTES: set[str] = set()


class World:
    """The objects every matrix runs against."""

    def __init__(self, *, alice: User, bob: User, carol: User) -> None:
        self.users = {"alice": alice, "bob": bob, "carol": carol}
        self.users["dave"] = user_create(username="dave", password=PASSWORD, roles=[Role.MEMBER])
        self.granted_model = model_register(name="granted-model", actor=alice)
        self.open_model = model_register(name="open-model", open_to_all=True, actor=alice)
        self.hidden_model = model_register(name="hidden-model", actor=alice)
        model_access_grant(model=self.granted_model, grantee=bob, actor=alice)
        # bob's conversation with the granted model: nobody else may see or delete it.
        self.bobs_conversation = Conversation.objects.create(
            owner=bob, model=self.granted_model, title="bob's"
        )
        self.keys: dict[str, ApiKey] = {
            name: api_key_create(user=user, name=f"{name}-key", scopes=["chat"], actor=user)[0]
            for name, user in self.users.items()
        }

    def client(self, persona: str) -> APIClient:
        if persona == "anonymous":
            return APIClient()
        return bearer_client(login(self.users[persona]).access)


@pytest.fixture(name="world")
def world_fixture(alice: User, bob: User, carol: User) -> World:
    return World(alice=alice, bob=bob, carol=carol)


class PermissionMatrix:
    """Subclass and set `route`, `method`, `path`, `expected`; optionally `payload`, `visible`."""

    route: ClassVar[str]
    method: ClassVar[str] = "get"
    expected: ClassVar[dict[str, int]]
    # For list endpoints: persona -> the set `listed(response)` must equal.
    visible: ClassVar[dict[str, set[str]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        COVERED_ROUTES.add(f"{cls.method.upper()} {cls.route}")
        missing = set(PERSONAS) - set(cls.expected)
        if missing:
            raise TypeError(f"{cls.__name__} sets no expectation for {sorted(missing)}")

    def path(self, world: World, persona: str) -> str:
        return self.route

    def payload(self, world: World, persona: str) -> dict[str, Any] | None:
        return None

    def listed(self, response: Any) -> set[str]:
        raise NotImplementedError

    @pytest.mark.parametrize("persona", PERSONAS)
    def test_permission_matrix(self, world: World, persona: str) -> None:
        request: Callable[..., Any] = getattr(world.client(persona), self.method)
        payload = self.payload(world, persona)
        response = (
            request(self.path(world, persona), payload, format="json")
            if payload
            else request(self.path(world, persona))
        )
        assert response.status_code == self.expected[persona], (persona, response.content[:300])
        if persona in self.visible:
            assert self.listed(response) == self.visible[persona], persona
