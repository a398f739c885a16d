"""Object-level model access: open models, user grants, team grants; lists show only those."""

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from guardian.models import GroupObjectPermission, UserObjectPermission

from accounts.models import User
from accounts.roles import Role
from accounts.services import team_create, team_delete, team_member_add, user_create
from accounts.tasks import object_permissions_sweep
from audit.models import AuditEvent, AuditSubject
from inference.models import Model
from inference.selectors import model_get_usable, model_list_usable
from inference.services import model_access_grant, model_access_revoke, model_register
from tests.accounts.helpers import bearer_client, login
from tests.conftest import PASSWORD


@pytest.fixture
def dave(db: None) -> User:
    """A member with no grants."""
    return user_create(username="dave", password=PASSWORD, roles=[Role.MEMBER])


@pytest.fixture
def models(alice: User) -> dict[str, Model]:
    return {
        "open": model_register(name="open-model", open_to_all=True, actor=alice),
        "closed": model_register(name="closed-model", actor=alice),
        "team": model_register(name="team-model", actor=alice),
    }


def _names(user: User) -> set[str]:
    return set(model_list_usable(user=user).values_list("name", flat=True))


def test_members_see_open_models_and_their_grants_only(
    alice: User, bob: User, dave: User, models: dict[str, Model]
) -> None:
    model_access_grant(model=models["closed"], grantee=bob, actor=alice)
    assert _names(bob) == {"open-model", "closed-model"}
    assert _names(dave) == {"open-model"}
    assert _names(alice) == {"open-model", "closed-model", "team-model"}
    assert model_get_usable(user=dave, name="closed-model") is None
    event = AuditEvent.objects.get(action="model.access.granted")
    assert event.metadata["grantee"] == f"user {AuditSubject.objects.get(user=bob).pseudonym}"
    assert event.target_display == "closed-model"


def test_a_team_grant_reaches_every_member_and_only_them(
    alice: User, bob: User, dave: User, models: dict[str, Model]
) -> None:
    team = team_create(name="research", actor=alice)
    team_member_add(team=team, user=bob, actor=alice)
    model_access_grant(model=models["team"], grantee=team, actor=alice)
    assert "team-model" in _names(bob)
    assert "team-model" not in _names(dave)


def test_revoking_a_grant_takes_effect_at_once(alice: User, bob: User, models: dict[str, Model]) -> None:
    model_access_grant(model=models["closed"], grantee=bob, actor=alice)
    model_access_revoke(model=models["closed"], grantee=bob, actor=alice)
    assert "closed-model" not in _names(bob)
    assert AuditEvent.objects.filter(action="model.access.revoked").count() == 1


def test_v1_models_lists_only_usable_models_in_openai_format(
    alice: User, bob: User, dave: User, models: dict[str, Model]
) -> None:
    model_access_grant(model=models["closed"], grantee=bob, actor=alice)
    body = bearer_client(login(bob).access).get("/v1/models").json()
    assert body["object"] == "list"
    assert {entry["id"] for entry in body["data"]} == {"open-model", "closed-model"}
    assert all(entry["object"] == "model" and entry["owned_by"] == "gatehouse" for entry in body["data"])
    daves = bearer_client(login(dave).access).get("/v1/models").json()
    assert {entry["id"] for entry in daves["data"]} == {"open-model"}


def test_v1_errors_use_the_openai_shape(db: None) -> None:
    from rest_framework.test import APIClient

    body = APIClient().get("/v1/models").json()
    assert set(body) == {"error"}
    assert body["error"]["type"] == "authentication_error"
    assert body["error"]["message"]


def _grant_rows(model_pk: int) -> int:
    content_type = ContentType.objects.get_for_model(Model)
    return sum(
        grants.objects.filter(content_type=content_type, object_pk=str(model_pk)).count()
        for grants in (UserObjectPermission, GroupObjectPermission)
    )


def test_deleting_a_model_leaves_no_orphaned_grants(alice: User, bob: User, models: dict[str, Model]) -> None:
    team = team_create(name="ops", actor=alice)
    model = models["closed"]
    model_access_grant(model=model, grantee=bob, actor=alice)
    model_access_grant(model=model, grantee=team, actor=alice)
    pk = model.pk
    assert _grant_rows(pk) == 2
    model.delete()
    assert _grant_rows(pk) == 0


def test_deleting_a_team_or_user_removes_their_grants(
    alice: User, bob: User, models: dict[str, Model]
) -> None:
    team = team_create(name="ops", actor=alice)
    model_access_grant(model=models["closed"], grantee=team, actor=alice)
    model_access_grant(model=models["closed"], grantee=bob, actor=alice)
    team_delete(team=team, actor=alice)
    bob.delete()
    assert _grant_rows(models["closed"].pk) == 0


def test_the_scheduled_sweep_removes_grants_whose_object_is_gone(
    alice: User, bob: User, models: dict[str, Model]
) -> None:
    model = models["closed"]
    model_access_grant(model=model, grantee=bob, actor=alice)
    # Raw SQL (a hand-run statement, a data migration) sends no signals: the leak the sweep is for.
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {Model._meta.db_table} WHERE id = %s", [model.pk])  # noqa: S608
    assert _grant_rows(model.pk) == 1
    assert object_permissions_sweep() == 1
    assert _grant_rows(model.pk) == 0
    assert AuditEvent.objects.get(action="permission.orphans_removed").metadata == {"removed": 1}
