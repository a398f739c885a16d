"""A version's life: draft → staging → production → retired, plus canaries and rollback.

Every transition locks the model row first, so two managers acting at once serialise
instead of leaving a model with two production versions, and every one is audited with
before and after.
"""

from collections.abc import Mapping

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from audit.services import audit_event_record
from inference.models import Model, ModelVersion
from inference.services._actors import actor_kwargs

Status = ModelVersion.Status
MAX_CANARY_WEIGHT = 99


def _locked(version: ModelVersion) -> tuple[Model, ModelVersion]:
    model = Model.objects.select_for_update().get(pk=version.model_id)
    return model, ModelVersion.objects.select_for_update().get(pk=version.pk)


def _production(model: Model) -> ModelVersion | None:
    return model.versions.select_for_update().filter(status=Status.PRODUCTION).first()


def _check_duties(version: ModelVersion, actor: User | None) -> None:
    if (
        settings.GATEHOUSE_MODEL_SEPARATION_OF_DUTIES
        and actor is not None
        and version.created_by_id == actor.pk
    ):
        raise ValidationError("Separation of duties: the person who registered a version may not approve it.")


def _record(
    action: str,
    *,
    version: ModelVersion,
    actor: User | None,
    before: Mapping[str, object],
    after: Mapping[str, object],
) -> None:
    audit_event_record(
        action=action,
        target=version,
        metadata={
            "model": version.model.name,
            "version": version.label,
            "before": dict(before),
            "after": dict(after),
        },
        **actor_kwargs(actor),  # type: ignore[arg-type]
    )


def _canary_clear(model: Model) -> None:
    model.canary_version = None
    model.canary_weight = 0
    model.save(update_fields=["canary_version", "canary_weight", "updated_at"])


@transaction.atomic
def model_version_stage(*, version: ModelVersion, actor: User | None) -> ModelVersion:
    """draft → staging: ready to be tried as a canary or promoted."""
    _, version = _locked(version)
    if version.status != Status.DRAFT:
        raise ValidationError(f"Only a draft can be staged; {version} is {version.status}.")
    version.status = Status.STAGING
    version.save(update_fields=["status"])
    _record(
        "model.version.staged",
        version=version,
        actor=actor,
        before={"status": "draft"},
        after={"status": "staging"},
    )
    return version


def _make_production(model: Model, version: ModelVersion) -> ModelVersion | None:
    """Swap `version` in as production; the previous one retires. Returns the previous one."""
    now = timezone.now()
    previous = _production(model)
    if previous is not None:
        previous.status = Status.RETIRED
        previous.retired_at = now
        previous.save(update_fields=["status", "retired_at"])
    version.status = Status.PRODUCTION
    version.promoted_at = now
    version.retired_at = None
    version.save(update_fields=["status", "promoted_at", "retired_at"])
    if model.canary_version_id == version.pk:
        _canary_clear(model)
    return previous


@transaction.atomic
def model_version_promote(*, version: ModelVersion, actor: User | None) -> ModelVersion:
    """Make a staged (or draft) version the one that serves; the previous production retires."""
    model, version = _locked(version)
    if version.status not in (Status.DRAFT, Status.STAGING):
        raise ValidationError(
            f"Only a draft or staging version can be promoted; {version} is {version.status}."
        )
    _check_duties(version, actor)
    before = version.status
    previous = _make_production(model, version)
    _record(
        "model.version.promoted",
        version=version,
        actor=actor,
        before={"status": before, "production": previous.label if previous else None},
        after={"status": "production", "production": version.label},
    )
    return version


@transaction.atomic
def model_version_canary_start(*, version: ModelVersion, weight: int, actor: User | None) -> Model:
    """Send `weight` percent of conversations to a staging version, alongside production."""
    model, version = _locked(version)
    if version.status != Status.STAGING:
        raise ValidationError(f"A canary must be a staging version; {version} is {version.status}.")
    if not 1 <= weight <= MAX_CANARY_WEIGHT:
        raise ValidationError(f"The canary weight is a percentage from 1 to {MAX_CANARY_WEIGHT}.")
    if _production(model) is None:
        raise ValidationError(f"{model.name} has no production version to run a canary beside.")
    _check_duties(version, actor)
    before = {
        "canary": model.canary_version.label if model.canary_version else None,
        "weight": model.canary_weight,
    }
    model.canary_version = version
    model.canary_weight = weight
    model.save(update_fields=["canary_version", "canary_weight", "updated_at"])
    _record(
        "model.version.canary_started",
        version=version,
        actor=actor,
        before=before,
        after={"canary": version.label, "weight": weight},
    )
    return model


@transaction.atomic
def model_canary_stop(*, model: Model, actor: User | None) -> Model:
    model = Model.objects.select_for_update().get(pk=model.pk)
    canary = model.canary_version
    if canary is None:
        return model
    before = {"canary": canary.label, "weight": model.canary_weight}
    _canary_clear(model)
    _record(
        "model.version.canary_stopped",
        version=canary,
        actor=actor,
        before=before,
        after={"canary": None, "weight": 0},
    )
    return model


@transaction.atomic
def model_version_rollback(*, model: Model, actor: User | None) -> ModelVersion:
    """Put the previous production version back; the current one retires. Next request sees it."""
    model = Model.objects.select_for_update().get(pk=model.pk)
    current = _production(model)
    target = (
        model.versions.select_for_update()
        .filter(status=Status.RETIRED, promoted_at__isnull=False)
        .order_by("-promoted_at")
        .first()
    )
    if current is None or target is None:
        raise ValidationError(f"{model.name} has no earlier production version to roll back to.")
    _make_production(model, target)
    _record(
        "model.version.rolled_back",
        version=target,
        actor=actor,
        before={"production": current.label},
        after={"production": target.label, "retired": current.label},
    )
    return target


@transaction.atomic
def model_version_retire(*, version: ModelVersion, actor: User | None) -> ModelVersion:
    """Take a version out of service for good (a canary stops; production must be replaced first)."""
    model, version = _locked(version)
    if version.status == Status.PRODUCTION:
        raise ValidationError(
            "The production version cannot be retired directly; promote another or roll back."
        )
    if version.status == Status.RETIRED:
        return version
    before = version.status
    if model.canary_version_id == version.pk:
        _canary_clear(model)
    version.status = Status.RETIRED
    version.retired_at = timezone.now()
    version.save(update_fields=["status", "retired_at"])
    _record(
        "model.version.retired",
        version=version,
        actor=actor,
        before={"status": before},
        after={"status": "retired"},
    )
    return version
