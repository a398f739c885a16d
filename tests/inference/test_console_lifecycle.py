"""The lifecycle in the console: actions and the canary field call the audited services."""

from django.test import Client

from accounts.models import User
from accounts.roles import Role
from accounts.services import user_create
from audit.models import AuditEvent
from inference.models import Model, ModelVersion
from tests.inference.test_lifecycle import register_second_version


def _console(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _model_manager() -> User:
    return user_create(
        username="mia", password="a-long-password-42", roles=[Role.MODEL_MANAGER], is_staff=True
    )


def test_a_model_manager_stages_and_promotes_from_the_version_list(
    demo_version: ModelVersion, alice: User
) -> None:
    mia = _model_manager()
    v2 = register_second_version(demo_version.model, actor=alice)
    console = _console(mia)
    for action in ("stage", "promote"):
        response = console.post(
            "/admin/inference/modelversion/", {"action": action, "_selected_action": [v2.pk]}
        )
        assert response.status_code == 302
    v2.refresh_from_db()
    assert v2.status == ModelVersion.Status.PRODUCTION
    assert AuditEvent.objects.get(action="model.version.promoted", actor=mia)


def test_a_refused_transition_is_reported_not_applied(demo_version: ModelVersion, alice: User) -> None:
    response = _console(alice).post(
        "/admin/inference/modelversion/",
        {"action": "retire", "_selected_action": [demo_version.pk]},
        follow=True,
    )
    shown = " ".join(str(message) for message in response.context["messages"])
    assert "cannot be retired directly" in shown
    demo_version.refresh_from_db()
    assert demo_version.status == ModelVersion.Status.PRODUCTION


def test_the_canary_is_set_in_the_model_form_and_rolled_back_by_action(
    demo_version: ModelVersion, alice: User
) -> None:
    from inference.services import model_version_promote, model_version_stage

    v2 = register_second_version(demo_version.model, actor=alice)
    model_version_stage(version=v2, actor=alice)
    model = demo_version.model
    console = _console(alice)
    response = console.post(
        f"/admin/inference/model/{model.pk}/change/",
        {
            "name": model.name,
            "description": model.description,
            "open_to_all": "on",
            "max_tokens_cap": model.max_tokens_cap,
            "default_max_tokens": model.default_max_tokens,
            "wall_clock_limit_seconds": model.wall_clock_limit_seconds,
            "max_choices": model.max_choices,
            "canary": v2.pk,
            "canary_percent": 25,
            "versions-TOTAL_FORMS": 0,
            "versions-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 302
    model.refresh_from_db()
    assert (model.canary_version, model.canary_weight) == (v2, 25)
    model_version_promote(version=v2, actor=alice)
    console.post("/admin/inference/model/", {"action": "roll_back", "_selected_action": [model.pk]})
    demo_version.refresh_from_db()
    assert demo_version.status == ModelVersion.Status.PRODUCTION
    assert Model.objects.get(pk=model.pk).canary_version is None


def test_start_a_canary_asks_for_the_weight_then_calls_the_service(
    demo_version: ModelVersion, alice: User
) -> None:
    from inference.services import model_version_stage

    mia = _model_manager()
    v2 = register_second_version(demo_version.model, actor=alice)
    model_version_stage(version=v2, actor=alice)
    console = _console(mia)
    picked = {"action": "start_canary", "_selected_action": [v2.pk]}
    # Step one: the action shows a form for the weight and changes nothing yet.
    asked = console.post("/admin/inference/modelversion/", picked)
    assert asked.status_code == 200
    assert 'name="weight"' in asked.content.decode()
    assert Model.objects.get(pk=demo_version.model_id).canary_version is None
    # A weight out of range is shown again with the reason, and still changes nothing.
    refused = console.post("/admin/inference/modelversion/", {**picked, "apply": "1", "weight": 100})
    assert refused.status_code == 200
    assert "less than or equal to 99" in refused.content.decode()
    assert Model.objects.get(pk=demo_version.model_id).canary_version is None
    done = console.post("/admin/inference/modelversion/", {**picked, "apply": "1", "weight": 10}, follow=True)
    assert "Canary started at 10%: 1." in " ".join(str(message) for message in done.context["messages"])
    model = Model.objects.get(pk=demo_version.model_id)
    assert (model.canary_version, model.canary_weight) == (v2, 10)
    event = AuditEvent.objects.get(action="model.version.canary_started", actor=mia)
    assert event.metadata["after"] == {"canary": "v2", "weight": 10}


def test_a_production_version_cannot_become_a_canary(demo_version: ModelVersion, alice: User) -> None:
    done = _console(alice).post(
        "/admin/inference/modelversion/",
        {"action": "start_canary", "_selected_action": [demo_version.pk], "apply": "1", "weight": 10},
        follow=True,
    )
    shown = " ".join(str(message) for message in done.context["messages"])
    assert "A canary must be a staging version" in shown
    assert not AuditEvent.objects.filter(action="model.version.canary_started").exists()
