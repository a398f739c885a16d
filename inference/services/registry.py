"""The model registry: models, versions and their lifecycle."""

import shutil
from collections.abc import Mapping
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.models import User
from audit.models import AuditEvent
from audit.services import audit_event_record
from gatehouse.outbound import OutboundUrlRefused, outbound_url_check
from inference.hub import HubUnavailable, hub_snapshot_fetch
from inference.manifest import Progress, manifest_compute
from inference.models import Deployment, Model, ModelVersion
from inference.services._actors import actor_kwargs
from inference.upstream_credentials import UpstreamCredentialRefused, upstream_credential_check

# What registration fixes: changing any of these is a new version, with its own review.
MODEL_VERSION_REGISTRATION_FIELDS = (
    "model",
    "label",
    "backend",
    "source",
    "hub_repo",
    "hub_revision",
    "remote_base_url",
    "remote_model",
    "credential_ref",
    "allow_pickle_weights",
    "manifest",
    "created_by",
)
# What may change on an existing version (status moves through the lifecycle services).
MODEL_VERSION_UPDATABLE_FIELDS = ("dtype", "context_length", "tool_call_format")


@transaction.atomic
def model_register(
    *,
    name: str,
    description: str = "",
    open_to_all: bool = False,
    max_tokens_cap: int = 512,
    kind: str = Model.Kind.CHAT,
    actor: User | None,
) -> Model:
    model = Model(
        name=name, description=description, open_to_all=open_to_all, max_tokens_cap=max_tokens_cap, kind=kind
    )
    model.full_clean()
    model.save()
    audit_event_record(
        action="model.registered",
        target=model,
        metadata={
            "after": {
                "name": name,
                "open_to_all": open_to_all,
                "max_tokens_cap": max_tokens_cap,
                "kind": kind,
            }
        },
        **actor_kwargs(actor),  # type: ignore[arg-type]
    )
    return model


def model_version_upstream_errors(*, base_url: str, credential_ref: str) -> dict[str, str]:
    """What is wrong with a remote upstream's address and credential name, by field (empty: nothing).

    The address must pass the outbound guard (gatehouse.outbound); the credential must be the
    name of a GATEHOUSE_UPSTREAM_* environment variable (inference.upstream_credentials).
    """
    errors: dict[str, str] = {}
    if base_url:
        try:
            outbound_url_check(url=base_url)
        except OutboundUrlRefused as refused:
            errors["remote_base_url"] = str(refused)
    if credential_ref:
        try:
            upstream_credential_check(name=credential_ref)
        except UpstreamCredentialRefused as refused:
            errors["credential_ref"] = str(refused)
    return errors


def _version_save(version: ModelVersion, *, actor: User | None, after: dict[str, object]) -> ModelVersion:
    """Validate, save and audit a newly registered version (a draft)."""
    errors = model_version_upstream_errors(
        base_url=version.remote_base_url, credential_ref=version.credential_ref
    )
    if version.backend == ModelVersion.Backend.OPENAI_COMPATIBLE and not version.remote_base_url:
        errors["remote_base_url"] = "A remote version needs the base URL of its upstream."
    if errors:
        raise ValidationError(errors)
    version.full_clean()
    version.save()
    audit_event_record(
        action="model.version.registered",
        target=version,
        metadata={"after": after},
        **actor_kwargs(actor),  # type: ignore[arg-type]
    )
    return version


@transaction.atomic
def model_version_register(
    *,
    model: Model,
    label: str,
    source: str,
    context_length: int,
    dtype: str = "auto",
    allow_pickle_weights: bool = False,
    actor: User | None,
    progress: Progress | None = None,
    hub_repo: str = "",
    hub_revision: str = "",
    tool_call_format: str = ModelVersion.ToolCallFormat.NONE,
) -> ModelVersion:
    """Register a local model directory as a draft version, recording its SHA-256 manifest."""
    version = ModelVersion(
        model=model,
        label=label,
        backend=ModelVersion.Backend.TRANSFORMERS,
        source=source,
        hub_repo=hub_repo,
        hub_revision=hub_revision,
        dtype=dtype,
        context_length=context_length,
        allow_pickle_weights=allow_pickle_weights,
        tool_call_format=tool_call_format,
        created_by=actor,
    )
    version.manifest = manifest_compute(directory=version.source_path, progress=progress)
    if not version.manifest:
        raise ValidationError(f"The model directory {version.source_path.name!r} holds no files.")
    after: dict[str, object] = {"label": label, "source": source, "files": sorted(version.manifest)}
    if tool_call_format:
        after["tool_call_format"] = tool_call_format
    if hub_repo:
        after |= {"hub_repo": hub_repo, "hub_revision": hub_revision}
    return _version_save(version, actor=actor, after=after)


def model_version_register_from_hub(
    *,
    model_name: str,
    label: str,
    repo_id: str,
    revision: str = "main",
    context_length: int,
    dtype: str = "auto",
    allow_pickle_weights: bool = False,
    open_to_all: bool = False,
    kind: str = Model.Kind.CHAT,
    tool_call_format: str = ModelVersion.ToolCallFormat.NONE,
    actor: User | None,
    progress: Progress | None = None,
) -> ModelVersion:
    """Fetch a hub repository into the model root and register it as a draft version.

    The model is created (with `open_to_all`) if it does not exist yet. The download runs
    before any database write and outside any transaction (it can take long); the model and
    version are then written together, and if that fails the downloaded files are removed:
    nothing is left half-registered.
    """
    model = Model.objects.filter(name=model_name).first()
    if model is not None and ModelVersion.objects.filter(model=model, label=label).exists():
        raise ValidationError(f"{model_name} already has a version labelled {label!r}.")
    directory = Path(settings.GATEHOUSE_MODEL_ROOT) / model_name / label
    if directory.exists():
        raise ValidationError(f"{model_name}/{label} already exists under the model root.")
    try:
        commit = hub_snapshot_fetch(
            repo_id=repo_id, revision=revision, directory=directory, allow_pickle_weights=allow_pickle_weights
        )
        if not (directory / "config.json").is_file():
            raise ValidationError(f"{repo_id} is not a transformers model (it has no config.json).")
        with transaction.atomic():
            if model is None:
                model = model_register(name=model_name, open_to_all=open_to_all, kind=kind, actor=actor)
            return model_version_register(
                model=model,
                label=label,
                source=model_source_relative(directory=directory),
                context_length=context_length,
                dtype=dtype,
                allow_pickle_weights=allow_pickle_weights,
                actor=actor,
                progress=progress,
                hub_repo=repo_id,
                hub_revision=commit,
                tool_call_format=tool_call_format,
            )
    except HubUnavailable as unavailable:
        shutil.rmtree(directory, ignore_errors=True)
        raise ValidationError(str(unavailable)) from unavailable
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


@transaction.atomic
def model_version_register_remote(
    *,
    model: Model,
    label: str,
    base_url: str,
    remote_model: str,
    credential_ref: str = "",
    context_length: int = 8192,
    actor: User | None,
) -> ModelVersion:
    """Register a model served elsewhere by an OpenAI-compatible server, as a draft.

    `credential_ref` names the environment variable that holds the upstream's API key; the
    key itself is never stored or shown.
    """
    version = ModelVersion(
        model=model,
        label=label,
        backend=ModelVersion.Backend.OPENAI_COMPATIBLE,
        remote_base_url=base_url,
        remote_model=remote_model,
        credential_ref=credential_ref,
        context_length=context_length,
        created_by=actor,
    )
    version = _version_save(
        version,
        actor=actor,
        after={"label": label, "backend": "openai_compatible", "base_url": base_url, "model": remote_model},
    )
    # Its own upstream is its first deployment; more may join while it is a draft or staging.
    Deployment.objects.create(
        version=version, base_url=base_url, remote_model=remote_model, credential_ref=credential_ref
    )
    return version


@transaction.atomic
def model_deployment_add(
    *,
    version: ModelVersion,
    base_url: str,
    remote_model: str,
    credential_ref: str = "",
    weight: int = 1,
    max_concurrency: int | None = None,
    tokens_per_minute: int | None = None,
    actor: User | None,
) -> Deployment:
    """Another upstream for a remote version, taking `weight` shares of its calls, and at
    most `max_concurrency` at once and `tokens_per_minute` (None: no limit).

    Only while the version is a draft or staging: what serves users changes through a new
    version and its review, as any other change of what registration fixes. The address
    passes the outbound guard, the credential is an allow-listed name.
    """
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    if version.backend != ModelVersion.Backend.OPENAI_COMPATIBLE:
        raise ValidationError("Only a remote version has deployments.")
    if version.status not in (ModelVersion.Status.DRAFT, ModelVersion.Status.STAGING):
        raise ValidationError(
            f"{version} is {version.status}: deployments join a draft or staging version "
            "(register a new version to change what serves users)."
        )
    errors = model_version_upstream_errors(base_url=base_url, credential_ref=credential_ref)
    if errors:
        raise ValidationError(
            {"base_url" if name == "remote_base_url" else name: why for name, why in errors.items()}
        )
    deployment = Deployment(
        version=version,
        base_url=base_url,
        remote_model=remote_model,
        credential_ref=credential_ref,
        weight=weight,
        max_concurrency=max_concurrency,
        tokens_per_minute=tokens_per_minute,
    )
    deployment.full_clean()
    deployment.save()
    audit_event_record(
        action="model.deployment.added",
        target=version,
        metadata={
            "after": {
                "base_url": base_url,
                "model": remote_model,
                "credential_ref": credential_ref,
                "weight": weight,
                "max_concurrency": max_concurrency,
                "tokens_per_minute": tokens_per_minute,
            }
        },
        **actor_kwargs(actor),  # type: ignore[arg-type]
    )
    return deployment


@transaction.atomic
def model_version_update(
    *, version: ModelVersion, changes: Mapping[str, object], actor: User | None
) -> ModelVersion:
    """Change what may change on an existing version (its dtype, context length); audited.

    What registration fixed (where the model comes from, its upstream and credential, the
    pickle opt-in, the manifest) is refused: a change there is a new version, reviewed anew.
    """
    fixed = sorted(set(changes) & set(MODEL_VERSION_REGISTRATION_FIELDS))
    if fixed:
        raise ValidationError(
            f"{', '.join(fixed)} {'is' if len(fixed) == 1 else 'are'} fixed when a version is "
            "registered; register a new version to change it."
        )
    unknown = sorted(set(changes) - set(MODEL_VERSION_UPDATABLE_FIELDS))
    if unknown:
        raise ValidationError(
            f"{', '.join(unknown)} cannot be changed here: only "
            f"{' and '.join(MODEL_VERSION_UPDATABLE_FIELDS)} can (status moves by stage, promote, retire)."
        )
    locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
    before = {name: getattr(locked, name) for name in changes}
    changed = {name: value for name, value in changes.items() if before[name] != value}
    if not changed:
        return locked
    for name, value in changed.items():
        setattr(locked, name, value)
    locked.full_clean()
    locked.save(update_fields=list(changed))
    audit_event_record(
        action="model.version.changed",
        target=locked,
        metadata={
            "model": locked.model.name,
            "version": locked.label,
            "before": {name: before[name] for name in changed},
            "after": changed,
        },
        **actor_kwargs(actor),  # type: ignore[arg-type]
    )
    return locked


def model_source_relative(*, directory: Path) -> str:
    """Store paths under the model root relative to it, so the root can move."""
    root = Path(settings.GATEHOUSE_MODEL_ROOT).resolve()
    resolved = directory.resolve()
    return resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else str(resolved)


def model_version_load_refused_record(*, version: ModelVersion, reason: str, generation_id: str) -> None:
    """Refusing to load tampered or unsafe weights, or an upstream registration that breaks the
    rules, is a security event, recorded like one."""
    audit_event_record(
        action="model.version.load_refused",
        actor_display="system",
        actor_kind=AuditEvent.ActorKind.SYSTEM,
        target=version,
        outcome=AuditEvent.Outcome.DENIED,
        metadata={"reason": reason, "generation_id": generation_id},
    )
