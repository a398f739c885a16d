"""The registry API (`/api/models/`): a model manager registers and ships a model without a
Python shell, under the console's rules (permissions, separation of duties, the outbound guard,
credentials by allow-listed name, model-root paths only), every change audited."""

import shutil
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.models import User
from accounts.roles import Role
from accounts.services import api_key_create, user_create
from audit.models import AuditEvent
from inference.models import Model, ModelVersion
from tests.accounts.helpers import bearer_client, login
from tests.conftest import PASSWORD
from tests.fake_openai import FakeUpstream

pytestmark = pytest.mark.django_db


@pytest.fixture
def mia() -> User:
    """A model manager."""
    return user_create(username="mia", password=PASSWORD, roles=[Role.MODEL_MANAGER])


def _as(user: User) -> APIClient:
    return bearer_client(login(user).access)


def _remote(label: str, upstream: FakeUpstream, **overrides: Any) -> dict[str, Any]:
    return {
        "label": label,
        "backend": "openai_compatible",
        "base_url": upstream.base_url,
        "remote_model": "upstream-model",
        **overrides,
    }


def _statuses(body: dict[str, Any]) -> dict[str, str]:
    return {version["label"]: version["status"] for version in body["versions"]}


@override_settings(GATEHOUSE_MODEL_SEPARATION_OF_DUTIES=True)
def test_a_model_manager_ships_a_remote_model_and_an_admin_approves(
    mia: User, alice: User, bob: User, upstream: FakeUpstream
) -> None:
    manager, admin = _as(mia), _as(alice)
    created = manager.post("/api/models/", {"name": "api-model", "open_to_all": True}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["versions"] == []
    for label in ("r1", "r2"):
        registered = manager.post("/api/models/api-model/versions/", _remote(label, upstream), format="json")
        assert registered.status_code == 201, registered.content
        assert manager.post(f"/api/models/api-model/versions/{label}/stage/").status_code == 200
    # Separation of duties: who registered a version may not put it in front of users.
    refused = manager.post("/api/models/api-model/versions/r1/promote/")
    assert refused.status_code == 400
    assert "Separation of duties" in str(refused.json())
    assert _statuses(admin.post("/api/models/api-model/versions/r1/promote/").json()) == {
        "r1": "production",
        "r2": "staging",
    }
    canary = admin.post("/api/models/api-model/versions/r2/canary/", {"weight": 10}, format="json")
    assert canary.json()["canary"] == {"label": "r2", "weight": 10}
    assert admin.post("/api/models/api-model/canary-stop/").json()["canary"] is None
    assert _statuses(admin.post("/api/models/api-model/versions/r2/promote/").json()) == {
        "r1": "retired",
        "r2": "production",
    }
    rolled_back = admin.post("/api/models/api-model/rollback/")
    assert _statuses(rolled_back.json()) == {"r1": "production", "r2": "retired"}
    # A member chats with it at once, through the version the registry put in production.
    chat = _as(bob).post(
        "/v1/chat/completions",
        {"model": "api-model", "messages": [{"role": "user", "content": "hi"}]},
        format="json",
    )
    assert chat.status_code == 200, chat.content
    assert chat.json()["system_fingerprint"] == "api-model@r1"
    actions = list(
        AuditEvent.objects.filter(actor__in=[mia, alice])
        .order_by("id")
        .values_list("action", "actor__username")
    )
    assert ("model.registered", "mia") in actions
    assert ("model.version.registered", "mia") in actions
    assert ("model.version.promoted", "alice") in actions
    assert ("model.version.rolled_back", "alice") in actions


def test_the_registry_is_read_with_models_read_and_changed_with_models_write(mia: User) -> None:
    _, reader = api_key_create(user=mia, name="read", scopes=["models:read"], actor=mia)
    _, writer = api_key_create(user=mia, name="write", scopes=["models:write"], actor=mia)
    assert bearer_client(reader).get("/api/models/").status_code == 200
    assert bearer_client(reader).post("/api/models/", {"name": "x"}, format="json").status_code == 403
    assert bearer_client(writer).post("/api/models/", {"name": "x"}, format="json").status_code == 201


def test_members_and_auditors_are_refused(bob: User, carol: User) -> None:
    for user in (bob, carol):
        client = _as(user)
        assert client.get("/api/models/").status_code == 403
        assert client.post("/api/models/", {"name": "x"}, format="json").status_code == 403
    assert not Model.objects.filter(name="x").exists()


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"base_url": "http://169.254.169.254/v1"}, "remote_base_url", "cloud metadata"),
        ({"credential_ref": "DATABASE_URL"}, "credential_ref", "GATEHOUSE_UPSTREAM_"),
        ({"remote_model": ""}, "remote_model", "may not be blank"),
        ({"source": "demo"}, "source", "Not used by this backend"),
        ({"label": "../x"}, "label", "pattern"),
    ],
)
def test_a_bad_remote_version_is_a_400_that_writes_nothing(
    mia: User, upstream: FakeUpstream, body: dict[str, Any], field: str, fragment: str
) -> None:
    client = _as(mia)
    client.post("/api/models/", {"name": "api-model"}, format="json")
    refused = client.post(
        "/api/models/api-model/versions/", {**_remote("r1", upstream), **body}, format="json"
    )
    assert refused.status_code == 400, refused.content
    assert fragment in str(refused.json()), refused.json()
    assert field in str(refused.json())
    assert not ModelVersion.objects.filter(model__name="api-model").exists()
    assert not AuditEvent.objects.filter(action="model.version.registered").exists()


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("/etc", "relative to the model root"),
        ("../outside", "relative to the model root"),
        ("nowhere", "No Hugging Face model directory"),
    ],
)
def test_a_local_version_comes_only_from_under_the_model_root(
    mia: User, tmp_path: Path, source: str, fragment: str
) -> None:
    client = _as(mia)
    client.post("/api/models/", {"name": "api-model"}, format="json")
    with override_settings(GATEHOUSE_MODEL_ROOT=str(tmp_path)):
        refused = client.post(
            "/api/models/api-model/versions/",
            {"label": "v1", "backend": "transformers", "source": source},
            format="json",
        )
    assert refused.status_code == 400
    assert fragment in str(refused.json())


def test_a_local_version_is_registered_with_its_manifest(
    mia: User, tmp_path: Path, demo_directory: Path
) -> None:
    shutil.copytree(demo_directory, tmp_path / "demo")
    client = _as(mia)
    client.post("/api/models/", {"name": "api-model"}, format="json")
    with override_settings(GATEHOUSE_MODEL_ROOT=str(tmp_path)):
        registered = client.post(
            "/api/models/api-model/versions/",
            {"label": "v1", "backend": "transformers", "source": "demo", "tool_call_format": "hermes"},
            format="json",
        )
    assert registered.status_code == 201, registered.content
    version = ModelVersion.objects.get(model__name="api-model", label="v1")
    assert "config.json" in version.manifest
    assert (version.source, version.tool_call_format, version.status) == ("demo", "hermes", "draft")


def test_unknown_models_versions_and_bad_steps(mia: User, alice: User, upstream: FakeUpstream) -> None:
    client = _as(alice)
    assert client.get("/api/models/nope/").status_code == 404
    client.post("/api/models/", {"name": "api-model"}, format="json")
    assert client.post("/api/models/api-model/versions/v9/stage/").status_code == 404
    client.post("/api/models/api-model/versions/", _remote("r1", upstream), format="json")
    # A retired version cannot be promoted, a canary needs production, a rollback an earlier
    # production version.
    assert client.post("/api/models/api-model/versions/r1/retire/").status_code == 200
    assert client.post("/api/models/api-model/versions/r1/promote/").status_code == 400
    client.post("/api/models/api-model/versions/", _remote("r2", upstream), format="json")
    assert client.post("/api/models/api-model/versions/r2/stage/").status_code == 200
    assert (
        client.post("/api/models/api-model/versions/r2/canary/", {"weight": 10}, format="json").status_code
        == 400
    )
    assert (
        client.post("/api/models/api-model/versions/r2/canary/", {"weight": 100}, format="json").status_code
        == 400
    )
    assert client.post("/api/models/api-model/rollback/").status_code == 400
    duplicate = client.post("/api/models/api-model/versions/", _remote("r1", upstream), format="json")
    assert duplicate.status_code == 400
    assert client.post("/api/models/", {"name": "api-model"}, format="json").status_code == 400
    assert ModelVersion.objects.filter(model__name="api-model").count() == 2


def test_a_model_manager_sets_how_a_model_is_served_audited(
    mia: User, alice: User, upstream: FakeUpstream
) -> None:
    manager = _as(mia)
    for name in ("api-model", "spare-model"):
        assert manager.post("/api/models/", {"name": name}, format="json").status_code == 201
    changes = {
        "routing": "least_busy",
        "fallback_models": ["spare-model"],
        "response_cache": True,
        "response_cache_seconds": 60,
        "response_cache_charge": "none",
    }
    answer = manager.patch("/api/models/api-model/", changes, format="json")
    assert answer.status_code == 200, answer.content
    assert {name: answer.json()[name] for name in changes} == changes
    assert answer.json()["response_cache_shared"] is False
    record = AuditEvent.objects.get(action="model.serving_changed")
    assert record.actor_display == "mia"
    assert record.metadata["before"]["routing"] == "weighted"
    assert record.metadata["after"]["fallback_models"] == ["spare-model"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"fallback_models": ["no-such-model"]}, "fallback_models"),
        ({"fallback_models": ["api-model"]}, "fallback_models"),
        ({"routing": "round_robin"}, "routing"),
        ({"response_cache_seconds": 0}, "response_cache_seconds"),
        ({"name": "renamed"}, "name"),
        ({}, "non_field_errors"),
    ],
)
def test_a_bad_serving_change_is_a_400_that_changes_nothing(
    mia: User, changes: dict[str, Any], field: str
) -> None:
    manager = _as(mia)
    manager.post("/api/models/", {"name": "api-model"}, format="json")
    answer = manager.patch("/api/models/api-model/", changes, format="json")
    assert answer.status_code == 400, answer.content
    assert field in str(answer.json())
    model = Model.objects.get(name="api-model")
    assert (model.routing, model.fallback_models, model.response_cache) == ("weighted", [], False)
    assert not AuditEvent.objects.filter(action="model.serving_changed").exists()
