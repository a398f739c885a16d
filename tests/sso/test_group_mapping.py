"""Provider groups map to roles and teams; leaving a group loses them, and every session."""

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from accounts.models import RefreshFamily, Team, User
from accounts.roles import Role
from accounts.services.teams import team_create
from audit.models import AuditEvent
from sso.models import GroupMapping
from sso.services import group_mapping_save
from tests.sso.conftest import corp_with
from tests.sso.oidc_provider import OidcProviderProcess
from tests.sso.test_console_sign_in import sign_in

pytestmark = pytest.mark.django_db


def roles_of(user: User) -> set[str]:
    return set(user.groups.values_list("name", flat=True))


@pytest.fixture
def mapped(corp: OidcProviderProcess, alice: User) -> Team:
    research = team_create(name="research", actor=alice)
    group_mapping_save(
        mapping=GroupMapping(provider="corp", group="gh-auditors", role=Role.AUDITOR), actor=alice
    )
    group_mapping_save(mapping=GroupMapping(provider="corp", group="gh-research", team=research), actor=alice)
    return research


def test_groups_give_roles_and_teams_at_the_first_sign_in(
    client: Client, corp: OidcProviderProcess, mapped: Team
) -> None:
    corp.person("erin", groups=["gh-auditors", "gh-research", "unmapped"])
    assert sign_in(client, corp, "erin").status_code == 302
    erin = User.objects.get(username="erin")
    assert roles_of(erin) == {Role.AUDITOR.value, mapped.group.name}
    assert erin.is_staff
    assert AuditEvent.objects.filter(action="team.member.added", target_id=str(erin.pk)).exists()


def test_leaving_a_group_loses_its_role_and_ends_sessions(
    client: Client, corp: OidcProviderProcess, mapped: Team
) -> None:
    corp.person("erin", groups=["gh-auditors", "gh-research"])
    assert sign_in(client, corp, "erin").status_code == 302
    erin = User.objects.get(username="erin")
    old_session = RefreshFamily.objects.create(user=erin)
    other_browser = Client()
    other_browser.force_login(erin)
    corp.person("erin", groups=["gh-research"])
    client.logout()
    assert sign_in(client, corp, "erin").status_code == 302
    erin.refresh_from_db()
    assert Role.AUDITOR.value not in roles_of(erin)
    assert mapped.group.name in roles_of(erin)
    assert not erin.is_staff
    old_session.refresh_from_db()
    assert old_session.revoked_at is not None
    other_browser.get("/admin/")
    assert "_auth_user_id" not in other_browser.session  # its console session is over
    reduced = AuditEvent.objects.get(action="auth.sso.access_reduced")
    assert reduced.metadata["removed"] == [Role.AUDITOR.value]
    assert AuditEvent.objects.filter(action="role.revoked", target_id=str(erin.pk)).exists()


def test_roles_no_mapping_names_are_left_alone(
    client: Client, corp: OidcProviderProcess, mapped: Team, alice: User
) -> None:
    from accounts.services.users import user_roles_set

    corp.person("erin", groups=[])
    assert sign_in(client, corp, "erin").status_code == 302
    erin = User.objects.get(username="erin")
    user_roles_set(user=erin, roles=[Role.MEMBER, Role.MODEL_MANAGER], actor=alice)
    client.logout()
    assert sign_in(client, corp, "erin").status_code == 302
    assert roles_of(erin) == {Role.MEMBER.value, Role.MODEL_MANAGER.value}


def test_without_a_default_role_an_unmapped_person_is_refused(
    client: Client, settings: Any, corp: OidcProviderProcess, mapped: Team
) -> None:
    corp_with(settings, corp, DEFAULT_ROLE="")
    corp.person("erin", groups=["unmapped"])
    answer = sign_in(client, corp, "erin")
    assert answer.status_code == 403
    assert b"None of your groups" in answer.content
    assert not User.objects.filter(username="erin").exists()
    corp.person("erin", groups=["gh-auditors"])
    assert sign_in(client, corp, "erin").status_code == 302
    assert roles_of(User.objects.get(username="erin")) == {Role.AUDITOR.value}


def test_a_mapping_must_name_a_provider_and_give_something(corp: OidcProviderProcess, alice: User) -> None:
    with pytest.raises(ValidationError, match="No provider is configured"):
        group_mapping_save(
            mapping=GroupMapping(provider="elsewhere", group="g", role=Role.ADMIN), actor=alice
        )
    with pytest.raises(ValidationError, match="gives a role, a team, or both"):
        group_mapping_save(mapping=GroupMapping(provider="corp", group="g"), actor=alice)
    assert not GroupMapping.objects.exists()


def test_mapping_changes_are_audited_with_before_and_after(corp: OidcProviderProcess, alice: User) -> None:
    mapping = group_mapping_save(
        mapping=GroupMapping(provider="corp", group="g", role=Role.AUDITOR), actor=alice
    )
    mapping.role = Role.ADMIN
    group_mapping_save(mapping=mapping, actor=alice)
    changed = AuditEvent.objects.get(action="sso.mapping.changed")
    assert changed.metadata["before"]["role"] == "auditor"
    assert changed.metadata["after"]["role"] == "admin"


def test_the_console_edits_mappings_for_admins_only(
    client: Client, corp: OidcProviderProcess, alice: User, carol: User
) -> None:
    team = team_create(name="ops", actor=alice)
    client.force_login(alice)
    answer = client.post(
        "/admin/sso/groupmapping/add/", {"provider": "corp", "group": "gh-ops", "role": "", "team": team.pk}
    )
    assert answer.status_code == 302, answer.content[:2000]
    assert GroupMapping.objects.get().team == team
    assert AuditEvent.objects.filter(action="sso.mapping.created").exists()
    carol_client = Client()
    carol_client.force_login(carol)
    refused = carol_client.get("/admin/sso/groupmapping/")
    assert refused.status_code in {302, 403}
    assert b"gh-ops" not in refused.content
