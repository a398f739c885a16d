"""Promote, canary and retire are rights of their own: editing a version's page is not enough."""

from django.contrib.auth.models import Group, Permission
from django.test import Client

from accounts.models import User
from accounts.roles import Role
from accounts.services import user_create
from inference.models import ModelVersion
from tests.inference.test_lifecycle import register_second_version


def _console(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _editor() -> User:
    """Staff who may edit versions (view and change) but holds no lifecycle right."""
    user = user_create(username="eddie", password="a-long-password-42", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="inference",
            codename__in=["view_modelversion", "change_modelversion", "view_model", "change_model"],
        )
    )
    return user


def test_lifecycle_rights_belong_to_admins_and_model_managers(db: None) -> None:
    lifecycle = {"promote_modelversion", "canary_modelversion", "retire_modelversion"}
    for role, holds in [
        (Role.ADMIN, True),
        (Role.MODEL_MANAGER, True),
        (Role.AUDITOR, False),
        (Role.COMPLIANCE_OFFICER, False),
        (Role.MEMBER, False),
    ]:
        codenames = set(Group.objects.get(name=role.value).permissions.values_list("codename", flat=True))
        assert (lifecycle <= codenames) is holds, role


def test_editing_a_version_does_not_let_one_promote_it(demo_version: ModelVersion, alice: User) -> None:
    v2 = register_second_version(demo_version.model, actor=alice)
    console = _console(_editor())
    console.post("/admin/inference/modelversion/", {"action": "stage", "_selected_action": [v2.pk]})
    v2.refresh_from_db()
    assert v2.status == ModelVersion.Status.STAGING  # staging is an edit
    for action in ("promote", "start_canary", "retire"):
        console.post("/admin/inference/modelversion/", {"action": action, "_selected_action": [v2.pk]})
        v2.refresh_from_db()
        assert v2.status == ModelVersion.Status.STAGING, action
    page = console.get("/admin/inference/modelversion/")
    offered = {name for name, _label in page.context["action_form"].fields["action"].choices if name}
    assert offered == {"stage"}


def test_rolling_back_needs_the_promotion_right(demo_version: ModelVersion, alice: User) -> None:
    from inference.services import model_version_promote, model_version_stage

    v2 = register_second_version(demo_version.model, actor=alice)
    model_version_stage(version=v2, actor=alice)
    model_version_promote(version=v2, actor=alice)
    model = demo_version.model
    _console(_editor()).post(
        "/admin/inference/model/", {"action": "roll_back", "_selected_action": [model.pk]}
    )
    v2.refresh_from_db()
    assert v2.status == ModelVersion.Status.PRODUCTION
    _console(alice).post("/admin/inference/model/", {"action": "roll_back", "_selected_action": [model.pk]})
    demo_version.refresh_from_db()
    assert demo_version.status == ModelVersion.Status.PRODUCTION


def test_the_model_form_does_not_start_a_canary_without_the_right(
    demo_version: ModelVersion, alice: User
) -> None:
    from inference.services import model_version_stage

    v2 = register_second_version(demo_version.model, actor=alice)
    model_version_stage(version=v2, actor=alice)
    model = demo_version.model
    response = _console(_editor()).post(
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
        follow=True,
    )
    shown = " ".join(str(message) for message in response.context["messages"])
    assert "needs the permission to run canaries" in shown
    model.refresh_from_db()
    assert model.canary_version is None
