"""Every audited action, set up and ready to run, with a way to tell whether it happened.

Each entry prepares what its action needs (with the trail working), then returns the action
to run and `happened`, which reads the database for the action's own effect: the row it
creates, changes or deletes. `tests/audit/test_completeness.py` runs each one twice, once
with the trail working (so `happened` is shown to notice the action) and once with every
audit insert failing (so the action must not be in the database afterwards).
"""

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from guardian.models import UserObjectPermission
from rest_framework.exceptions import AuthenticationFailed

from accounts.models import (
    ApiKey,
    QuotaPolicy,
    RecoveryCodeDevice,
    RefreshFamily,
    Team,
    TwoFactorRolePolicy,
    UsageRecord,
    User,
)
from accounts.roles import Role
from accounts.services import (
    api_key_create,
    api_key_revoke,
    auth_logout,
    auth_tokens_obtain,
    auth_tokens_refresh,
    team_create,
    team_delete,
    team_member_add,
    team_member_remove,
    two_factor_enroll,
    user_activate,
    user_create,
    user_deactivate,
    user_roles_set,
)
from accounts.services.api_keys import api_key_rehash
from accounts.services.quotas import quota_policy_delete, quota_policy_save
from accounts.services.teams import team_rename
from accounts.services.two_factor import (
    recovery_codes_regenerate,
    totp_enrolment_confirm,
    totp_enrolment_start,
    two_factor_remove,
    two_factor_reset,
    two_factor_role_policy_save,
)
from accounts.tasks import object_permissions_sweep
from audit.compliance import requests as compliance_requests
from audit.compliance.data_exports import (
    compliance_export_download,
    compliance_export_request,
    compliance_export_run,
    compliance_exports_expire,
)
from audit.compliance.erasure import compliance_erasure_request, compliance_erasure_run
from audit.compliance.requests import (
    compliance_request_claim,
    compliance_request_fail,
    compliance_requests_sweep,
)
from audit.compliance.retention import retention_conversations_purge, retention_usage_records_purge
from audit.models import ErasureRequest, ExportRequest
from inference.models import Conversation, Model, ModelVersion
from inference.selectors import USE_MODEL
from inference.services import (
    conversation_delete,
    conversation_exchange_record,
    model_access_grant,
    model_access_revoke,
    model_canary_stop,
    model_register,
    model_source_relative,
    model_version_canary_start,
    model_version_promote,
    model_version_register,
    model_version_register_remote,
    model_version_retire,
    model_version_rollback,
    model_version_stage,
    model_version_update,
)
from scim.models import ScimGroup, ScimToken, ScimUser
from scim.patch import PatchOperation, patch_operations_parse
from scim.payloads import GroupAttributes, UserAttributes
from scim.services import (
    scim_group_create,
    scim_group_patch,
    scim_token_create,
    scim_token_revoke,
    scim_user_create,
    scim_user_deprovision,
    scim_user_patch,
)
from sso.models import ExternalIdentity, GroupMapping
from sso.providers import OidcProvider, oidc_providers_from_environ
from sso.services import external_identity_delete, group_mapping_save, sso_sign_in
from tests.conftest import PASSWORD

# Registered, never dialled: nothing in these actions talks to the upstream.
UPSTREAM = "http://127.0.0.1:9/v1"


@dataclass(frozen=True)
class World:
    alice: User  # the admin
    bob: User  # a member
    monkeypatch: pytest.MonkeyPatch


@dataclass(frozen=True)
class Prepared:
    act: Callable[[], object]
    happened: Callable[[], bool]


ACTIONS: dict[str, Callable[[World], Prepared]] = {}


def action(name: str) -> Callable[[Callable[[World], Prepared]], Callable[[World], Prepared]]:
    def register(prepare: Callable[[World], Prepared]) -> Callable[[World], Prepared]:
        ACTIONS[name] = prepare
        return prepare

    return register


def _refreshed(user: User) -> User:
    return User.objects.get(pk=user.pk)


def _key(world: World) -> ApiKey:
    return api_key_create(user=world.bob, name="k", scopes=["chat"], actor=world.bob)[0]


def _version(world: World, *, label: str = "v1", model: Model | None = None) -> ModelVersion:
    """A remote draft version (registered by nobody, so any actor may approve it)."""
    return model_version_register_remote(
        model=model or model_register(name="m", actor=world.alice),
        label=label,
        base_url=UPSTREAM,
        remote_model="upstream-model",
        actor=None,
    )


def _status(version: ModelVersion) -> str:
    return str(ModelVersion.objects.get(pk=version.pk).status)


def _requests_held(world: World) -> None:
    """Compliance work is queued on commit; here it is run (or not) by the case itself."""
    world.monkeypatch.setattr(compliance_requests, "compliance_task_queue", lambda **_: None)


def _conversation(world: World) -> Conversation:
    return conversation_exchange_record(
        conversation_id=str(uuid.uuid4()),
        owner_id=world.bob.pk,
        version_id=_version(world).pk,
        channel="api",
        new_messages=[{"role": "user", "content": "hi"}],
        reply="hello",
        prompt_tokens=1,
        completion_tokens=1,
        finish_reason="stop",
    )


# Identity and access ------------------------------------------------------------------------


@action("api key created")
def _api_key_create(world: World) -> Prepared:
    return Prepared(
        act=lambda: api_key_create(user=world.bob, name="k", scopes=["chat"], actor=world.bob),
        happened=ApiKey.objects.filter(user=world.bob).exists,
    )


@action("api key revoked")
def _api_key_revoke(world: World) -> Prepared:
    key = _key(world)
    return Prepared(
        act=lambda: api_key_revoke(api_key=key, actor=world.bob),
        happened=ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=False).exists,
    )


@action("api key rehashed")
def _api_key_rehash(world: World) -> Prepared:
    key = _key(world)
    ApiKey.objects.filter(pk=key.pk).update(secret_hash="hashed under a retired pepper")
    return Prepared(
        act=lambda: api_key_rehash(api_key=key, secret="the-secret"),
        happened=lambda: ApiKey.objects.get(pk=key.pk).secret_hash != "hashed under a retired pepper",
    )


@action("team created")
def _team_create(world: World) -> Prepared:
    return Prepared(
        act=lambda: team_create(name="ops", actor=world.alice),
        happened=lambda: (
            Team.objects.filter(name="ops").exists() or Group.objects.filter(name="team:ops").exists()
        ),
    )


@action("team member added")
def _team_member_add(world: World) -> Prepared:
    team = team_create(name="ops", actor=world.alice)
    return Prepared(
        act=lambda: team_member_add(team=team, user=world.bob, actor=world.alice),
        happened=_refreshed(world.bob).groups.filter(pk=team.group_id).exists,
    )


@action("team member removed")
def _team_member_remove(world: World) -> Prepared:
    team = team_create(name="ops", actor=world.alice)
    team_member_add(team=team, user=world.bob, actor=world.alice)
    return Prepared(
        act=lambda: team_member_remove(team=team, user=world.bob, actor=world.alice),
        happened=lambda: not world.bob.groups.filter(pk=team.group_id).exists(),
    )


@action("team deleted")
def _team_delete(world: World) -> Prepared:
    team = team_create(name="ops", actor=world.alice)
    pk = team.pk  # a deleted instance forgets its pk, even when the deletion rolls back
    return Prepared(
        act=lambda: team_delete(team=team, actor=world.alice),
        happened=lambda: not Team.objects.filter(pk=pk).exists(),
    )


@action("user created")
def _user_create(world: World) -> Prepared:
    return Prepared(
        act=lambda: user_create(
            username="dave", password=PASSWORD, roles=[Role.MEMBER], created_by=world.alice
        ),
        happened=User.objects.filter(username="dave").exists,
    )


@action("roles set")
def _user_roles_set(world: World) -> Prepared:
    return Prepared(
        act=lambda: user_roles_set(user=world.bob, roles=[Role.AUDITOR], actor=world.alice),
        happened=world.bob.groups.filter(name=Role.AUDITOR.value).exists,
    )


@action("password changed")
def _password_change(world: World) -> Prepared:
    stored = _refreshed(world.bob).password

    def change() -> None:
        user = _refreshed(world.bob)
        user.set_password("another-correct-horse-staple")
        user.save()

    return Prepared(act=change, happened=lambda: _refreshed(world.bob).password != stored)


@action("user deactivated")
def _user_deactivate(world: World) -> Prepared:
    return Prepared(
        act=lambda: user_deactivate(user=world.bob, actor=world.alice),
        happened=User.objects.filter(pk=world.bob.pk, is_active=False).exists,
    )


@action("user activated")
def _user_activate(world: World) -> Prepared:
    user_deactivate(user=world.bob, actor=world.alice)
    return Prepared(
        act=lambda: user_activate(user=world.bob, actor=world.alice),
        happened=User.objects.filter(pk=world.bob.pk, is_active=True).exists,
    )


@action("second factor enrolled")
def _two_factor_enroll(world: World) -> Prepared:
    return Prepared(
        act=lambda: two_factor_enroll(user=world.bob, actor=world.alice),
        happened=TOTPDevice.objects.filter(user=world.bob).exists,
    )


def _totp_code(user: User, *, confirmed: bool = True) -> str:
    """The code `user`'s newest authenticator shows now (a fresh one has used none)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=confirmed).latest("pk")
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, drift=device.drift):06d}"


def _recovery_codes(world: World) -> list[str]:
    """bob's recovery codes, after enrolling an authenticator as anyone does."""
    totp_enrolment_start(user=world.bob)
    return totp_enrolment_confirm(user=world.bob, code=_totp_code(world.bob, confirmed=False)).recovery_codes


def _recovery_codes_left(user: User) -> int:
    device = RecoveryCodeDevice.objects.filter(user=user).first()
    return device.remaining if device is not None else 0


@action("second factor enrolment started")
def _totp_enrolment_start(world: World) -> Prepared:
    return Prepared(
        act=lambda: totp_enrolment_start(user=world.bob),
        happened=TOTPDevice.objects.filter(user=world.bob, confirmed=False).exists,
    )


@action("second factor confirmed")
def _totp_enrolment_confirm(world: World) -> Prepared:
    totp_enrolment_start(user=world.bob)
    code = _totp_code(world.bob, confirmed=False)
    return Prepared(
        act=lambda: totp_enrolment_confirm(user=world.bob, code=code),
        happened=TOTPDevice.objects.filter(user=world.bob, confirmed=True).exists,
    )


@action("second factor confirmed with an enrolment token, which logs in")
def _totp_enrolment_with_token(world: World) -> Prepared:
    from accounts.enrolment_tokens import enrolment_token_issue

    token = enrolment_token_issue(user=world.bob)
    totp_enrolment_start(user=world.bob)
    code = _totp_code(world.bob, confirmed=False)
    return Prepared(
        act=lambda: totp_enrolment_confirm(
            user=world.bob, code=code, enrolment_token=token, start_session=True
        ),
        happened=RefreshFamily.objects.filter(user=world.bob).exists,
    )


@action("second factor removed")
def _two_factor_remove(world: World) -> Prepared:
    codes = _recovery_codes(world)
    return Prepared(
        act=lambda: two_factor_remove(user=world.bob, code=codes[0], channel="api"),
        happened=lambda: not TOTPDevice.objects.filter(user=world.bob).exists(),
    )


@action("recovery codes regenerated")
def _recovery_codes_regenerate(world: World) -> Prepared:
    codes = _recovery_codes(world)
    stored = RecoveryCodeDevice.objects.get(user=world.bob).code_hashes
    return Prepared(
        act=lambda: recovery_codes_regenerate(user=world.bob, code=codes[0], channel="api"),
        happened=lambda: not set(RecoveryCodeDevice.objects.get(user=world.bob).code_hashes) & set(stored),
    )


@action("login with a recovery code")
def _recovery_code_login(world: World) -> Prepared:
    codes = _recovery_codes(world)
    return Prepared(
        act=lambda: auth_tokens_obtain(
            username="bob", password=PASSWORD, client_ip="127.0.0.1", otp=codes[0]
        ),
        happened=lambda: _recovery_codes_left(world.bob) < len(codes),
    )


@action("second factors reset by an admin")
def _two_factor_reset(world: World) -> Prepared:
    two_factor_enroll(user=world.bob, actor=None)
    return Prepared(
        act=lambda: two_factor_reset(user=world.bob, actor=world.alice),
        happened=lambda: not TOTPDevice.objects.filter(user=world.bob).exists(),
    )


@action("second factor required of a role")
def _two_factor_role_policy(world: World) -> Prepared:
    role = Group.objects.get(name=Role.AUDITOR.value)
    return Prepared(
        act=lambda: two_factor_role_policy_save(policy=TwoFactorRolePolicy(role=role), actor=world.alice),
        happened=TwoFactorRolePolicy.objects.filter(role=role).exists,
    )


@action("login succeeded")
def _login(world: World) -> Prepared:
    return Prepared(
        act=lambda: auth_tokens_obtain(username="bob", password=PASSWORD, client_ip="127.0.0.1"),
        happened=RefreshFamily.objects.filter(user=world.bob).exists,
    )


@action("refresh token reused")
def _refresh_reused(world: World) -> Prepared:
    pair = auth_tokens_obtain(username="bob", password=PASSWORD, client_ip="127.0.0.1")
    auth_tokens_refresh(raw_refresh=pair.refresh)

    def reuse() -> None:
        # The session's end commits before the refusal is raised; the refusal itself is expected.
        with contextlib.suppress(AuthenticationFailed):
            auth_tokens_refresh(raw_refresh=pair.refresh)

    return Prepared(
        act=reuse, happened=RefreshFamily.objects.filter(user=world.bob, revoked_at__isnull=False).exists
    )


@action("logged out")
def _logout(world: World) -> Prepared:
    pair = auth_tokens_obtain(username="bob", password=PASSWORD, client_ip="127.0.0.1")
    return Prepared(
        act=lambda: auth_logout(
            user=world.bob, raw_refresh=pair.refresh, everywhere=False, current_family_id=None
        ),
        happened=RefreshFamily.objects.filter(user=world.bob, revoked_at__isnull=False).exists,
    )


@action("logged out everywhere")
def _logout_all(world: World) -> Prepared:
    auth_tokens_obtain(username="bob", password=PASSWORD, client_ip="127.0.0.1")
    return Prepared(
        act=lambda: auth_logout(user=world.bob, raw_refresh=None, everywhere=True, current_family_id=None),
        happened=RefreshFamily.objects.filter(user=world.bob, revoked_at__isnull=False).exists,
    )


@action("quota policy created")
def _quota_policy_create(world: World) -> Prepared:
    return Prepared(
        act=lambda: quota_policy_save(
            policy=QuotaPolicy(name="p", user=world.bob, requests_per_minute=5), actor=world.alice
        ),
        happened=QuotaPolicy.objects.filter(name="p").exists,
    )


@action("quota policy changed")
def _quota_policy_change(world: World) -> Prepared:
    policy = quota_policy_save(
        policy=QuotaPolicy(name="p", user=world.bob, requests_per_minute=5), actor=world.alice
    )

    def change() -> None:
        policy.requests_per_minute = 50
        quota_policy_save(policy=policy, actor=world.alice)

    return Prepared(
        act=change, happened=QuotaPolicy.objects.filter(pk=policy.pk, requests_per_minute=50).exists
    )


@action("quota policy deleted")
def _quota_policy_delete(world: World) -> Prepared:
    policy = quota_policy_save(
        policy=QuotaPolicy(name="p", user=world.bob, requests_per_minute=5), actor=world.alice
    )
    pk = policy.pk  # a deleted instance forgets its pk, even when the deletion rolls back
    return Prepared(
        act=lambda: quota_policy_delete(policy=policy, actor=world.alice),
        happened=lambda: not QuotaPolicy.objects.filter(pk=pk).exists(),
    )


@action("orphan object permissions swept")
def _orphans_swept(world: World) -> Prepared:
    # A grant on a model that is gone (the model's own deletion drops its grants: this is
    # what a deletion that skipped the signal leaves).
    UserObjectPermission.objects.bulk_create(
        [
            UserObjectPermission(
                user=world.bob,
                permission=Permission.objects.get(codename=USE_MODEL.split(".")[-1]),
                content_type=ContentType.objects.get_for_model(Model),
                object_pk="987654321",
            )
        ]
    )
    return Prepared(
        act=object_permissions_sweep,
        happened=lambda: not UserObjectPermission.objects.filter(user=world.bob).exists(),
    )


# Models and inference -----------------------------------------------------------------------


@action("model registered")
def _model_register(world: World) -> Prepared:
    return Prepared(
        act=lambda: model_register(name="m", actor=world.alice),
        happened=Model.objects.filter(name="m").exists,
    )


@action("local version registered")
def _version_register(world: World) -> Prepared:
    model = model_register(name="m", actor=world.alice)
    directory = Path(settings.GATEHOUSE_MODEL_ROOT) / f"completeness-{uuid.uuid4().hex}"
    directory.mkdir()
    (directory / "config.json").write_text("{}")
    return Prepared(
        act=lambda: model_version_register(
            model=model,
            label="v1",
            source=model_source_relative(directory=directory),
            context_length=128,
            actor=world.alice,
        ),
        happened=ModelVersion.objects.filter(model=model).exists,
    )


@action("remote version registered")
def _version_register_remote(world: World) -> Prepared:
    model = model_register(name="m", actor=world.alice)
    return Prepared(
        act=lambda: _version(world, model=model), happened=ModelVersion.objects.filter(model=model).exists
    )


@action("version changed")
def _version_update(world: World) -> Prepared:
    version = _version(world)
    return Prepared(
        act=lambda: model_version_update(
            version=version, changes={"context_length": 4096}, actor=world.alice
        ),
        happened=ModelVersion.objects.filter(pk=version.pk, context_length=4096).exists,
    )


@action("version staged")
def _version_stage(world: World) -> Prepared:
    version = _version(world)
    return Prepared(
        act=lambda: model_version_stage(version=version, actor=world.alice),
        happened=lambda: _status(version) == ModelVersion.Status.STAGING,
    )


@action("version promoted")
def _version_promote(world: World) -> Prepared:
    version = _version(world)
    return Prepared(
        act=lambda: model_version_promote(version=version, actor=world.alice),
        happened=lambda: _status(version) == ModelVersion.Status.PRODUCTION,
    )


def _production_and_staging(world: World) -> tuple[ModelVersion, ModelVersion]:
    production = _version(world)
    model_version_promote(version=production, actor=world.alice)
    staging = _version(world, label="v2", model=production.model)
    model_version_stage(version=staging, actor=world.alice)
    return production, staging


@action("canary started")
def _canary_start(world: World) -> Prepared:
    _, staging = _production_and_staging(world)
    return Prepared(
        act=lambda: model_version_canary_start(version=staging, weight=10, actor=world.alice),
        happened=Model.objects.filter(pk=staging.model_id, canary_version=staging).exists,
    )


@action("canary stopped")
def _canary_stop(world: World) -> Prepared:
    _, staging = _production_and_staging(world)
    model = model_version_canary_start(version=staging, weight=10, actor=world.alice)
    return Prepared(
        act=lambda: model_canary_stop(model=model, actor=world.alice),
        happened=Model.objects.filter(pk=model.pk, canary_version__isnull=True).exists,
    )


@action("version rolled back")
def _rollback(world: World) -> Prepared:
    first, second = _production_and_staging(world)
    model_version_promote(version=second, actor=world.alice)
    return Prepared(
        act=lambda: model_version_rollback(model=first.model, actor=world.alice),
        happened=lambda: _status(first) == ModelVersion.Status.PRODUCTION,
    )


@action("version retired")
def _version_retire(world: World) -> Prepared:
    version = _version(world)
    return Prepared(
        act=lambda: model_version_retire(version=version, actor=world.alice),
        happened=lambda: _status(version) == ModelVersion.Status.RETIRED,
    )


@action("model access granted")
def _access_grant(world: World) -> Prepared:
    model = model_register(name="m", actor=world.alice)
    return Prepared(
        act=lambda: model_access_grant(model=model, grantee=world.bob, actor=world.alice),
        happened=lambda: _refreshed(world.bob).has_perm(USE_MODEL, model),
    )


@action("model access revoked")
def _access_revoke(world: World) -> Prepared:
    model = model_register(name="m", actor=world.alice)
    model_access_grant(model=model, grantee=world.bob, actor=world.alice)
    return Prepared(
        act=lambda: model_access_revoke(model=model, grantee=world.bob, actor=world.alice),
        happened=lambda: not _refreshed(world.bob).has_perm(USE_MODEL, model),
    )


@action("conversation deleted")
def _conversation_delete(world: World) -> Prepared:
    conversation = _conversation(world)
    pk = conversation.pk  # a deleted instance forgets its pk, even when the deletion rolls back
    return Prepared(
        act=lambda: conversation_delete(conversation=conversation, actor=world.bob),
        happened=lambda: not Conversation.objects.filter(pk=pk).exists(),
    )


# Compliance and retention -------------------------------------------------------------------


@action("export requested")
def _export_request(world: World) -> Prepared:
    _requests_held(world)
    return Prepared(
        act=lambda: compliance_export_request(subject=world.bob, requested_by=world.bob),
        happened=ExportRequest.objects.filter(subject=world.bob).exists,
    )


@action("erasure requested")
def _erasure_request(world: World) -> Prepared:
    _requests_held(world)
    return Prepared(
        act=lambda: compliance_erasure_request(subject=world.bob, requested_by=world.bob),
        happened=ErasureRequest.objects.filter(subject=world.bob).exists,
    )


def _export(world: World, *, built: bool) -> ExportRequest:
    _requests_held(world)
    export = compliance_export_request(subject=world.bob, requested_by=world.bob)
    if built:
        compliance_export_run(export_id=str(export.pk))
    return ExportRequest.objects.get(pk=export.pk)


@action("export built")
def _export_run(world: World) -> Prepared:
    export = _export(world, built=False)
    return Prepared(
        act=lambda: compliance_export_run(export_id=str(export.pk)),
        happened=ExportRequest.objects.filter(pk=export.pk, status=ExportRequest.Status.DONE).exists,
    )


@action("export downloaded")
def _export_download(world: World) -> Prepared:
    export = _export(world, built=True)

    def download() -> None:
        compliance_export_download(export_id=str(export.pk), user=world.bob).file.close()

    return Prepared(act=download, happened=ExportRequest.objects.filter(pk=export.pk, downloads=1).exists)


@action("exports expired")
def _exports_expire(world: World) -> Prepared:
    export = _export(world, built=True)
    return Prepared(
        act=lambda: compliance_exports_expire(now=timezone.now() + timedelta(days=365)),
        happened=ExportRequest.objects.filter(pk=export.pk, file_name="").exists,
    )


@action("request failed")
def _request_fail(world: World) -> Prepared:
    export = _export(world, built=False)
    return Prepared(
        act=lambda: compliance_request_fail(request=export, error="the disk is full"),
        happened=ExportRequest.objects.filter(pk=export.pk, status=ExportRequest.Status.FAILED).exists,
    )


@action("lost requests re-queued")
def _requests_sweep(world: World) -> Prepared:
    export = _export(world, built=False)
    compliance_request_claim(model=ExportRequest, request_id=str(export.pk))
    return Prepared(
        act=lambda: compliance_requests_sweep(now=timezone.now() + timedelta(days=1)),
        happened=ExportRequest.objects.filter(pk=export.pk, status=ExportRequest.Status.PENDING).exists,
    )


@action("person erased")
def _erasure_run(world: World) -> Prepared:
    _requests_held(world)
    _conversation(world)
    erasure = compliance_erasure_request(subject=world.bob, requested_by=world.bob)
    return Prepared(
        act=lambda: compliance_erasure_run(erasure_id=str(erasure.pk)),
        happened=lambda: (
            not User.objects.filter(pk=world.bob.pk).exists()
            or not Conversation.objects.filter(owner=world.bob).exists()
        ),
    )


@action("conversations purged")
def _conversations_purge(world: World) -> Prepared:
    conversation = _conversation(world)
    later = timezone.now() + timedelta(days=settings.GATEHOUSE_RETENTION_CONVERSATION_DAYS + 1)
    return Prepared(
        act=lambda: retention_conversations_purge(now=later),
        happened=lambda: not Conversation.objects.filter(pk=conversation.pk).exists(),
    )


@action("usage records purged")
def _usage_purge(world: World) -> Prepared:
    record = UsageRecord.objects.create(
        created_at=timezone.now(), user_id=world.bob.pk, channel="api", outcome=UsageRecord.Outcome.COMPLETED
    )
    later = timezone.now() + timedelta(days=settings.GATEHOUSE_RETENTION_USAGE_RECORD_DAYS + 2)
    return Prepared(
        act=lambda: retention_usage_records_purge(now=later),
        happened=lambda: not UsageRecord.objects.filter(pk=record.pk).exists(),
    )


# Writes that skip the services, and the console --------------------------------------------


@action("bulk update")
def _bulk_update(world: World) -> Prepared:
    key = _key(world)
    return Prepared(
        act=lambda: ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now()),
        happened=ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=False).exists,
    )


@action("bulk create")
def _bulk_create(world: World) -> Prepared:
    return Prepared(
        act=lambda: QuotaPolicy.objects.bulk_create(
            [QuotaPolicy(name="p", user=world.bob, requests_per_minute=1)]
        ),
        happened=QuotaPolicy.objects.filter(name="p").exists,
    )


@action("bulk update of objects")
def _bulk_update_objects(world: World) -> Prepared:
    key = _key(world)
    key.name = "renamed"
    return Prepared(
        act=lambda: ApiKey.objects.bulk_update([key], ["name"]),
        happened=ApiKey.objects.filter(pk=key.pk, name="renamed").exists,
    )


@action("queryset delete")
def _queryset_delete(world: World) -> Prepared:
    model = model_register(name="m", actor=world.alice)
    return Prepared(
        act=lambda: Model.objects.filter(pk=model.pk).delete(),
        happened=lambda: not Model.objects.filter(pk=model.pk).exists(),
    )


@action("console edit")
def _console_add(world: World) -> Prepared:
    client = Client()
    client.force_login(world.alice)
    return Prepared(
        act=lambda: client.post("/admin/accounts/team/add/", {"name": "research", "description": "R&D"}),
        happened=Team.objects.filter(name="research").exists,
    )


@action("role permissions changed in the console")
def _console_role_permissions(world: World) -> Prepared:
    client = Client()
    client.force_login(world.alice)
    role = Group.objects.get(name=Role.AUDITOR.value)
    permission = role.permissions.model.objects.get(codename="view_team")
    wanted = [*role.permissions.values_list("pk", flat=True), permission.pk]
    return Prepared(
        act=lambda: client.post(
            f"/admin/auth/group/{role.pk}/change/", {"name": role.name, "permissions": wanted}
        ),
        happened=role.permissions.filter(pk=permission.pk).exists,
    )


def _console_sessions_of(user: User) -> int:
    return sum(
        1
        for session in Session.objects.all()
        if str(session.get_decoded().get("_auth_user_id")) == str(user.pk)
    )


@action("console login")
def _console_login(world: World) -> Prepared:
    client = Client()
    return Prepared(
        act=lambda: client.post("/admin/login/?next=/admin/", {"username": "alice", "password": PASSWORD}),
        happened=lambda: _console_sessions_of(world.alice) > 0,
    )


def _corp(world: World) -> OidcProvider:
    """A provider configured as `corp` (nothing is fetched: these act on verified claims)."""
    providers = oidc_providers_from_environ(
        {
            "GATEHOUSE_OIDC_CORP_ISSUER": "https://id.example.com",
            "GATEHOUSE_OIDC_CORP_CLIENT_ID": "gatehouse",
            "GATEHOUSE_OIDC_CORP_CLIENT_SECRET": "not-used",
        }
    )
    world.monkeypatch.setattr(settings, "GATEHOUSE_OIDC_PROVIDERS", providers)
    return providers["corp"]


def _claims(username: str, *groups: str) -> dict[str, object]:
    return {"sub": f"sub-{username}", "preferred_username": username, "groups": list(groups)}


@action("single sign-on creates a person")
def _sso_just_in_time(world: World) -> Prepared:
    corp = _corp(world)
    return Prepared(
        act=lambda: sso_sign_in(provider=corp, claims=_claims("erin")),
        happened=User.objects.filter(username="erin").exists,
    )


@action("single sign-on takes a role whose group was left")
def _sso_access_reduced(world: World) -> Prepared:
    corp = _corp(world)
    group_mapping_save(
        mapping=GroupMapping(provider="corp", group="auditors", role=Role.AUDITOR), actor=world.alice
    )
    erin = sso_sign_in(provider=corp, claims=_claims("erin", "auditors")).user
    return Prepared(
        act=lambda: sso_sign_in(provider=corp, claims=_claims("erin")),
        happened=lambda: not _refreshed(erin).groups.filter(name=Role.AUDITOR.value).exists(),
    )


@action("single sign-on group mapping created")
def _sso_mapping_create(world: World) -> Prepared:
    _corp(world)
    return Prepared(
        act=lambda: group_mapping_save(
            mapping=GroupMapping(provider="corp", group="admins", role=Role.ADMIN), actor=world.alice
        ),
        happened=GroupMapping.objects.filter(group="admins").exists,
    )


@action("single sign-on identity unlinked")
def _sso_identity_delete(world: World) -> Prepared:
    identity = ExternalIdentity.objects.create(user=world.bob, provider="corp", subject="bob-at-corp")
    return Prepared(
        act=lambda: external_identity_delete(identity=identity, actor=world.alice),
        happened=lambda: not ExternalIdentity.objects.filter(pk=identity.pk).exists(),
    )


# SCIM provisioning -----------------------------------------------------------------------------


def _scim_token(world: World) -> ScimToken:
    return scim_token_create(name="okta", created_by=world.alice)[0]


def _scim_user(world: World, token: ScimToken) -> ScimUser:
    return scim_user_create(
        attributes=UserAttributes(user_name="dana", email="dana@example.com"), token=token
    )


def _scim_patch(*operations: dict[str, object]) -> list[PatchOperation]:
    return patch_operations_parse(
        {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": list(operations)}
    )


@action("team renamed")
def _team_rename(world: World) -> Prepared:
    team = team_create(name="ops", actor=world.alice)
    return Prepared(
        act=lambda: team_rename(team=team, name="platform", actor=world.alice),
        happened=Team.objects.filter(name="platform").exists,
    )


@action("scim token created")
def _scim_token_create(world: World) -> Prepared:
    return Prepared(
        act=lambda: scim_token_create(name="entra-id", created_by=world.alice),
        happened=ScimToken.objects.filter(name="entra-id").exists,
    )


@action("scim token revoked")
def _scim_token_revoke(world: World) -> Prepared:
    token = _scim_token(world)
    return Prepared(
        act=lambda: scim_token_revoke(token=token, actor=world.alice),
        happened=ScimToken.objects.filter(pk=token.pk, revoked_at__isnull=False).exists,
    )


@action("scim user provisioned")
def _scim_user_create(world: World) -> Prepared:
    token = _scim_token(world)
    return Prepared(
        act=lambda: _scim_user(world, token),
        happened=lambda: User.objects.filter(username="dana").exists() or ScimUser.objects.exists(),
    )


@action("scim user updated")
def _scim_user_update(world: World) -> Prepared:
    token = _scim_token(world)
    link = _scim_user(world, token)
    operations = _scim_patch({"op": "replace", "path": "name.givenName", "value": "Dana"})
    return Prepared(
        act=lambda: scim_user_patch(scim_id=str(link.id), operations=operations, token=token),
        happened=User.objects.filter(pk=link.user_id, first_name="Dana").exists,
    )


@action("scim user deactivated")
def _scim_user_deactivate(world: World) -> Prepared:
    token = _scim_token(world)
    link = _scim_user(world, token)
    operations = _scim_patch({"op": "replace", "value": {"active": False}})
    return Prepared(
        act=lambda: scim_user_patch(scim_id=str(link.id), operations=operations, token=token),
        happened=User.objects.filter(pk=link.user_id, is_active=False).exists,
    )


@action("scim user deprovisioned")
def _scim_user_deprovision(world: World) -> Prepared:
    token = _scim_token(world)
    link = _scim_user(world, token)
    return Prepared(
        act=lambda: scim_user_deprovision(scim_id=str(link.id), token=token),
        happened=lambda: not ScimUser.objects.filter(pk=link.pk).exists(),
    )


@action("scim group provisioned")
def _scim_group_create(world: World) -> Prepared:
    token = _scim_token(world)
    return Prepared(
        act=lambda: scim_group_create(attributes=GroupAttributes(display_name="Ops Team"), token=token),
        happened=lambda: Team.objects.filter(name="ops-team").exists() or ScimGroup.objects.exists(),
    )


@action("scim group updated")
def _scim_group_update(world: World) -> Prepared:
    token = _scim_token(world)
    link = scim_group_create(attributes=GroupAttributes(display_name="Ops"), token=token)
    operations = _scim_patch({"op": "replace", "path": "externalId", "value": "g-1"})
    return Prepared(
        act=lambda: scim_group_patch(scim_id=str(link.id), operations=operations, token=token),
        happened=ScimGroup.objects.filter(pk=link.pk, external_id="g-1").exists,
    )


@action("scim group members changed")
def _scim_group_members(world: World) -> Prepared:
    token = _scim_token(world)
    member = _scim_user(world, token)
    link = scim_group_create(attributes=GroupAttributes(display_name="Ops"), token=token)
    operations = _scim_patch({"op": "add", "path": "members", "value": [{"value": str(member.id)}]})
    return Prepared(
        act=lambda: scim_group_patch(scim_id=str(link.id), operations=operations, token=token),
        happened=User.objects.filter(pk=member.user_id, groups=link.team.group_id).exists,
    )
