"""SPEC §4: the five roles are seeded by migration."""

import pytest
from django.contrib.auth.models import Group

from accounts.roles import Role


@pytest.mark.django_db
def test_migrations_seed_the_five_roles() -> None:
    assert set(Group.objects.values_list("name", flat=True)) >= {
        "admin",
        "model_manager",
        "member",
        "auditor",
        "compliance_officer",
    }
    assert {role.value for role in Role} == {
        "admin",
        "model_manager",
        "member",
        "auditor",
        "compliance_officer",
    }


def test_the_user_model_is_gatehouses_own() -> None:
    from django.contrib.auth import get_user_model

    assert get_user_model()._meta.label == "accounts.User"
