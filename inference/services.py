"""Writes for the model registry and the chat lifecycle."""

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction
from guardian.shortcuts import assign_perm, remove_perm

from accounts.models import Team, User
from accounts.principal import Principal
from audit.models import AuditEvent
from audit.services import audit_event_record
from inference.engines.base import GenerationParams
from inference.manifest import manifest_compute
from inference.models import Model, ModelVersion
from inference.protocol import ChatFrame
from inference.selectors import USE_MODEL, model_get_usable, model_version_serving

DEFAULT_MAX_TOKENS = 64
DEFAULT_TEMPERATURE = 0.7


def _actor_kwargs(actor: User | None) -> dict[str, object]:
    if actor is not None:
        return {"actor": actor}
    return {"actor_display": "system", "actor_kind": AuditEvent.ActorKind.SYSTEM}


@transaction.atomic
def model_register(
    *,
    name: str,
    description: str = "",
    open_to_all: bool = False,
    max_tokens_cap: int = 512,
    actor: User | None,
) -> Model:
    model = Model(name=name, description=description, open_to_all=open_to_all, max_tokens_cap=max_tokens_cap)
    model.full_clean()
    model.save()
    audit_event_record(
        action="model.registered",
        target=model,
        metadata={"after": {"name": name, "open_to_all": open_to_all, "max_tokens_cap": max_tokens_cap}},
        **_actor_kwargs(actor),  # type: ignore[arg-type]
    )
    return model


@transaction.atomic
def model_version_register(
    *,
    model: Model,
    label: str,
    source: str,
    context_length: int,
    dtype: str = "auto",
    actor: User | None,
) -> ModelVersion:
    """Register a local model directory as a draft version, recording its SHA-256 manifest."""
    version = ModelVersion(
        model=model,
        label=label,
        backend=ModelVersion.Backend.TRANSFORMERS,
        source=source,
        dtype=dtype,
        context_length=context_length,
        created_by=actor,
    )
    version.manifest = manifest_compute(directory=version.source_path)
    if not version.manifest:
        raise ValueError(f"model directory {version.source_path.name!r} holds no files")
    version.full_clean()
    version.save()
    audit_event_record(
        action="model.version.registered",
        target=version,
        metadata={"after": {"label": label, "source": source, "files": sorted(version.manifest)}},
        **_actor_kwargs(actor),  # type: ignore[arg-type]
    )
    return version


@transaction.atomic
def model_version_promote(*, version: ModelVersion, actor: User | None) -> ModelVersion:
    """Make `version` the one that serves its model; the previous production version retires."""
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    previous = (
        ModelVersion.objects.select_for_update()
        .filter(model_id=version.model_id, status=ModelVersion.Status.PRODUCTION)
        .exclude(pk=version.pk)
        .first()
    )
    if previous is not None:
        previous.status = ModelVersion.Status.RETIRED
        previous.save(update_fields=["status"])
    before = version.status
    version.status = ModelVersion.Status.PRODUCTION
    version.save(update_fields=["status"])
    audit_event_record(
        action="model.version.promoted",
        target=version,
        metadata={
            "before": {"status": before, "production": previous.label if previous else None},
            "after": {"status": version.status, "production": version.label},
        },
        **_actor_kwargs(actor),  # type: ignore[arg-type]
    )
    return version


class ChatRejected(Exception):
    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ChatPlan:
    model_name: str
    version_id: int
    version_label: str
    params: GenerationParams


def chat_prepare(*, user: User, frame: ChatFrame) -> ChatPlan:
    """Decide what serves a chat request, or say why it cannot run.

    A model the user may not use is "not found", exactly like one that does not exist,
    so the answer does not reveal which models exist.
    """
    model = model_get_usable(user=user, name=frame.model)
    if model is None:
        raise ChatRejected(
            f"Model '{frame.model}' does not exist or you do not have access to it.", code="not_found"
        )
    version = model_version_serving(model=model)
    if version is None:
        raise ChatRejected(f"Model '{model.name}' has no version in production.", code="unavailable")
    max_tokens = frame.max_tokens or min(DEFAULT_MAX_TOKENS, model.max_tokens_cap)
    if max_tokens > model.max_tokens_cap:
        raise ChatRejected(
            f"max_tokens is {max_tokens}, above this model's limit of {model.max_tokens_cap}.", code="invalid"
        )
    params = GenerationParams(
        max_tokens=max_tokens,
        temperature=DEFAULT_TEMPERATURE if frame.temperature is None else frame.temperature,
        top_p=1.0 if frame.top_p is None else frame.top_p,
    )
    return ChatPlan(model_name=model.name, version_id=version.pk, version_label=version.label, params=params)


def chat_record_outcome(
    *,
    principal: Principal,
    version_id: int,
    metadata: dict[str, object],
    failed: bool,
) -> AuditEvent:
    """Audit one websocket chat once it has ended, whichever way it ended."""
    version = ModelVersion.objects.select_related("model").get(pk=version_id)
    return audit_event_record(
        action="inference.failed" if failed else "inference.completed",
        actor=principal.user,
        actor_kind=AuditEvent.ActorKind.API_KEY if principal.api_key else None,
        actor_display=principal.audit_display,
        target=version,
        outcome=AuditEvent.Outcome.FAILURE if failed else AuditEvent.Outcome.SUCCESS,
        metadata={"channel": "websocket", "model": version.model.name, "version": version.label, **metadata},
    )


def model_source_relative(*, directory: Path) -> str:
    """Store paths under the model root relative to it, so the root can move."""
    root = Path(settings.GATEHOUSE_MODEL_ROOT).resolve()
    resolved = directory.resolve()
    return resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else str(resolved)


def demo_model_ensure() -> ModelVersion:
    """Build, register and promote the demo model (SPEC §7); idempotent.

    Registration records the manifest of the directory as it is, as for any model. Once
    registered, files that still match the manifest are reused; missing or changed files
    are rebuilt. The build is deterministic, so a rebuild normally reproduces the recorded
    manifest; when it does not (another transformers release) the new one is recorded and
    audited.
    """
    from inference.demo_model import (
        DEMO_CONTEXT_LENGTH,
        DEMO_MODEL_NAME,
        DEMO_VERSION_LABEL,
        demo_model_build,
    )
    from inference.manifest import ManifestMismatch, manifest_verify

    directory = Path(settings.GATEHOUSE_MODEL_ROOT) / DEMO_MODEL_NAME / DEMO_VERSION_LABEL
    model = Model.objects.filter(name=DEMO_MODEL_NAME).first()
    version = model.versions.filter(label=DEMO_VERSION_LABEL).first() if model else None
    if version is None:
        if not directory.is_dir():
            demo_model_build(directory=directory)
    else:
        try:
            manifest_verify(directory=directory, expected=version.manifest)
        except ManifestMismatch:
            demo_model_build(directory=directory)

    with transaction.atomic():
        if model is None:
            model = model_register(
                name=DEMO_MODEL_NAME,
                description="Tiny GPT-2 built locally for demos and tests; its output is noise.",
                open_to_all=True,
                max_tokens_cap=256,
                actor=None,
            )
        if version is None:
            version = model_version_register(
                model=model,
                label=DEMO_VERSION_LABEL,
                source=model_source_relative(directory=directory),
                context_length=DEMO_CONTEXT_LENGTH,
                actor=None,
            )
        else:
            rebuilt = manifest_compute(directory=directory)
            if rebuilt != version.manifest:
                audit_event_record(
                    action="model.version.manifest_replaced",
                    target=version,
                    metadata={"before": version.manifest, "after": rebuilt, "reason": "demo model rebuilt"},
                    **_actor_kwargs(None),  # type: ignore[arg-type]
                )
                version.manifest = rebuilt
                version.save(update_fields=["manifest"])
        if version.status != ModelVersion.Status.PRODUCTION:
            version = model_version_promote(version=version, actor=None)
    return version


def _grantee_display(grantee: User | Team) -> str:
    return f"team {grantee.name}" if isinstance(grantee, Team) else grantee.get_username()


@transaction.atomic
def model_access_grant(*, model: Model, grantee: User | Team, actor: User | None) -> None:
    """Let a user, or every member of a team, use `model` (a guardian object permission)."""
    assign_perm(USE_MODEL, grantee.group if isinstance(grantee, Team) else grantee, model)
    audit_event_record(
        action="model.access.granted",
        target=model,
        metadata={"grantee": _grantee_display(grantee), "permission": USE_MODEL},
        **_actor_kwargs(actor),  # type: ignore[arg-type]
    )


@transaction.atomic
def model_access_revoke(*, model: Model, grantee: User | Team, actor: User | None) -> None:
    remove_perm(USE_MODEL, grantee.group if isinstance(grantee, Team) else grantee, model)
    audit_event_record(
        action="model.access.revoked",
        target=model,
        metadata={"grantee": _grantee_display(grantee), "permission": USE_MODEL},
        **_actor_kwargs(actor),  # type: ignore[arg-type]
    )
