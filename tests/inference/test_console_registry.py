"""Versions registered in the console: the same rules as the services, and nothing that
registration fixed can be edited afterwards."""

from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from audit.models import AuditEvent
from inference.models import Model, ModelVersion
from inference.services import model_register, model_version_promote, model_version_register_remote
from tests.inference.test_console_lifecycle import _console, _model_manager

PUBLIC_UPSTREAM = "https://93.184.216.34/v1"
ADD_URL = "/admin/inference/modelversion/add/"


@pytest.fixture
def remote_model(alice: User) -> Model:
    return model_register(name="remote-model", open_to_all=True, actor=alice)


@pytest.fixture
def upstream_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("GATEHOUSE_UPSTREAM_VLLM", "sk-upstream-value")
    monkeypatch.setenv("JWT_SIGNING_KEY", "the-signing-key")
    return "GATEHOUSE_UPSTREAM_VLLM"


def _remote_form(model: Model, **overrides: Any) -> dict[str, Any]:
    form = {
        "model": model.pk,
        "label": "r1",
        "backend": ModelVersion.Backend.OPENAI_COMPATIBLE,
        "source": "",
        "remote_base_url": PUBLIC_UPSTREAM,
        "remote_model": "upstream-model",
        "credential_ref": "GATEHOUSE_UPSTREAM_VLLM",
        "dtype": "auto",
        "context_length": 8192,
    }
    form.update(overrides)
    return form


@pytest.mark.usefixtures("upstream_key")
def test_the_add_page_offers_upstream_credential_names_never_values(remote_model: Model) -> None:
    page = _console(_model_manager()).get(ADD_URL).content.decode()
    assert '<select name="credential_ref"' in page
    assert 'value="GATEHOUSE_UPSTREAM_VLLM"' in page
    assert "sk-upstream-value" not in page
    assert "JWT_SIGNING_KEY" not in page


@pytest.mark.usefixtures("upstream_key")
def test_the_add_page_refuses_a_credential_outside_the_upstream_prefix(remote_model: Model) -> None:
    response = _console(_model_manager()).post(
        ADD_URL, _remote_form(remote_model, credential_ref="JWT_SIGNING_KEY")
    )
    assert response.status_code == 200
    assert "credential_ref" in response.context["adminform"].form.errors
    assert not ModelVersion.objects.exists()


@pytest.mark.usefixtures("upstream_key")
def test_the_add_page_refuses_a_metadata_address(remote_model: Model) -> None:
    response = _console(_model_manager()).post(
        ADD_URL, _remote_form(remote_model, remote_base_url="http://169.254.169.254/latest/meta-data/")
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "link-local or cloud metadata" in str(errors["remote_base_url"])
    assert not ModelVersion.objects.exists()


@pytest.mark.usefixtures("upstream_key")
def test_a_console_registration_records_its_author_for_separation_of_duties(
    remote_model: Model, settings: Any
) -> None:
    settings.GATEHOUSE_MODEL_SEPARATION_OF_DUTIES = True
    mia = _model_manager()
    console = _console(mia)
    assert console.post(ADD_URL, _remote_form(remote_model)).status_code == 302
    version = ModelVersion.objects.get(model=remote_model)
    assert version.created_by == mia
    assert version.credential_ref == "GATEHOUSE_UPSTREAM_VLLM"
    assert AuditEvent.objects.filter(action="model.version.registered", actor=mia).exists()
    response = console.post(
        "/admin/inference/modelversion/",
        {"action": "promote", "_selected_action": [version.pk]},
        follow=True,
    )
    shown = " ".join(str(message) for message in response.context["messages"])
    assert "Separation of duties" in shown
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.DRAFT


@pytest.mark.usefixtures("upstream_key")
def _deployments_management(version: ModelVersion, *, adding: int = 0) -> dict[str, Any]:
    """The change page's deployments formset as posted: its rows shown, `adding` new ones."""
    existing = list(version.deployments.all())
    form = {
        "deployments-TOTAL_FORMS": str(len(existing) + adding),
        "deployments-INITIAL_FORMS": str(len(existing)),
        "deployments-MIN_NUM_FORMS": "0",
        "deployments-MAX_NUM_FORMS": "1000",
    }
    for index, deployment in enumerate(existing):
        form[f"deployments-{index}-id"] = str(deployment.pk)
        form[f"deployments-{index}-version"] = str(version.pk)
    return form


def test_the_change_page_cannot_change_what_registration_fixed(remote_model: Model, alice: User) -> None:
    version = model_version_register_remote(
        model=remote_model,
        label="r1",
        base_url=PUBLIC_UPSTREAM,
        remote_model="upstream-model",
        credential_ref="GATEHOUSE_UPSTREAM_VLLM",
        actor=alice,
    )
    console: Client = _console(_model_manager())
    url = f"/admin/inference/modelversion/{version.pk}/change/"
    page = console.get(url).content.decode()
    for fixed in (
        "backend",
        "source",
        "remote_base_url",
        "remote_model",
        "credential_ref",
        "allow_pickle_weights",
    ):
        assert f'name="{fixed}"' not in page
    response = console.post(
        url,
        {
            **_remote_form(
                remote_model,
                remote_base_url="https://attacker.example.com/v1",
                credential_ref="JWT_SIGNING_KEY",
                allow_pickle_weights="on",
                context_length=4096,
            ),
            **_deployments_management(version),
        },
    )
    assert response.status_code == 302
    version.refresh_from_db()
    assert version.remote_base_url == PUBLIC_UPSTREAM
    assert version.credential_ref == "GATEHOUSE_UPSTREAM_VLLM"
    assert version.allow_pickle_weights is False
    assert version.context_length == 4096


def test_a_local_directory_registered_in_the_console_gets_its_manifest(
    remote_model: Model, tmp_path: Any
) -> None:
    from inference.demo_model import demo_model_build
    from inference.manifest import manifest_compute

    demo_model_build(directory=tmp_path / "local")
    mia = _model_manager()
    form = _remote_form(
        remote_model,
        backend=ModelVersion.Backend.TRANSFORMERS,
        source=str(tmp_path / "local"),
        remote_base_url="",
        remote_model="",
        credential_ref="",
    )
    assert _console(mia).post(ADD_URL, form).status_code == 302
    version = ModelVersion.objects.get(model=remote_model)
    assert version.created_by == mia
    assert version.manifest == manifest_compute(directory=tmp_path / "local")


def test_a_local_version_may_not_name_an_upstream_or_a_missing_directory(
    remote_model: Model, tmp_path: Any
) -> None:
    form = _remote_form(remote_model, backend=ModelVersion.Backend.TRANSFORMERS, source=str(tmp_path))
    response = _console(_model_manager()).post(ADD_URL, form)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "config.json" in str(errors["source"])
    assert "Only a remote version" in str(errors["remote_base_url"])
    assert not ModelVersion.objects.exists()


def _model_page_fields(name: str, **overrides: Any) -> dict[str, Any]:
    """What the model page posts for a model of its defaults."""
    return {
        "name": name,
        "description": "",
        "max_tokens_cap": 512,
        "default_max_tokens": 64,
        "wall_clock_limit_seconds": 120,
        "max_choices": 4,
        "teams_with_access": [],
        "users_with_access": [],
        "versions-TOTAL_FORMS": 0,
        "versions-INITIAL_FORMS": 0,
        **overrides,
    }


def test_a_model_kind_is_chosen_when_it_is_added_and_kept_after(alice: User) -> None:
    console = _console(alice)
    fields = _model_page_fields("console-embedder")
    added = console.post("/admin/inference/model/add/", {**fields, "kind": "embedding"})
    assert added.status_code == 302, added.content.decode()[:2000]
    model = Model.objects.get(name="console-embedder")
    assert model.kind == Model.Kind.EMBEDDING
    # Its versions are of that kind: the change page shows it and a posted kind is ignored.
    changed = console.post(f"/admin/inference/model/{model.pk}/change/", {**fields, "kind": "chat"})
    assert changed.status_code == 302
    model.refresh_from_db()
    assert model.kind == Model.Kind.EMBEDDING


def test_the_change_page_adds_a_deployment_to_a_draft_and_shows_health(
    remote_model: Model, alice: User
) -> None:
    version = model_version_register_remote(
        model=remote_model, label="r1", base_url=PUBLIC_UPSTREAM, remote_model="upstream-model", actor=alice
    )
    console: Client = _console(_model_manager())
    url = f"/admin/inference/modelversion/{version.pk}/change/"
    page = console.get(url).content.decode()
    assert "health (this server)" in page.lower()
    assert "not called by this process yet" in page or "answering" in page
    form = {
        "dtype": "auto",
        "context_length": version.context_length,
        "tool_call_format": "",
        **_deployments_management(version, adding=1),
        "deployments-1-base_url": "http://169.254.169.254/v1",
        "deployments-1-remote_model": "replica",
        "deployments-1-credential_ref": "",
        "deployments-1-weight": "2",
    }
    refused = console.post(url, form)
    assert refused.status_code == 200  # the form again, with the guard's refusal
    assert "cloud metadata" in refused.content.decode()
    assert version.deployments.count() == 1
    added = console.post(url, {**form, "deployments-1-base_url": "https://93.184.216.35/v1"})
    assert added.status_code == 302
    assert list(version.deployments.values_list("base_url", "weight")) == [
        (PUBLIC_UPSTREAM, 1),
        ("https://93.184.216.35/v1", 2),
    ]
    assert AuditEvent.objects.filter(action="model.deployment.added").count() == 1


def test_a_production_version_shows_its_deployments_and_takes_none(remote_model: Model, alice: User) -> None:
    version = model_version_register_remote(
        model=remote_model, label="r1", base_url=PUBLIC_UPSTREAM, remote_model="upstream-model", actor=alice
    )
    model_version_promote(version=version, actor=alice)
    console: Client = _console(_model_manager())
    url = f"/admin/inference/modelversion/{version.pk}/change/"
    page = console.get(url).content.decode()
    assert PUBLIC_UPSTREAM in page
    assert 'name="deployments-__prefix__-base_url"' not in page  # no row to add
    console.post(
        url,
        {
            "dtype": "auto",
            "context_length": version.context_length,
            "tool_call_format": "",
            **_deployments_management(version, adding=1),
            "deployments-1-base_url": "https://93.184.216.35/v1",
            "deployments-1-remote_model": "replica",
            "deployments-1-weight": "1",
        },
    )
    assert version.deployments.count() == 1


def test_the_model_page_sets_how_the_model_is_served_through_the_service(
    remote_model: Model, alice: User
) -> None:
    model_register(name="spare-model", actor=alice)
    console = _console(alice)
    url = f"/admin/inference/model/{remote_model.pk}/change/"
    page = console.get(url).content.decode()
    assert 'name="serving_fallback_models"' in page
    assert 'name="serving_routing"' in page
    fields = {
        **_model_page_fields("remote-model", open_to_all="on"),
        "serving_routing": "least_busy",
        "serving_fallback_models": "spare-model",
        "serving_response_cache": "on",
        "serving_response_cache_seconds": 90,
        "serving_response_cache_charge": "none",
    }
    assert console.post(url, fields).status_code == 302
    remote_model.refresh_from_db()
    assert (remote_model.routing, remote_model.fallback_models) == ("least_busy", ["spare-model"])
    assert (remote_model.response_cache, remote_model.response_cache_seconds) == (True, 90)
    assert AuditEvent.objects.get(action="model.serving_changed").metadata["after"]["routing"] == "least_busy"
    # A bad fallback is refused on the page; nothing of it changes.
    refused = console.post(url, {**fields, "serving_fallback_models": "nope"}, follow=True)
    assert "No model named nope" in refused.content.decode()
    remote_model.refresh_from_db()
    assert remote_model.fallback_models == ["spare-model"]
