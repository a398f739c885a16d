"""The demo model of SPEC §7, built and registered on first use."""

from pathlib import Path

from django.conf import settings
from django.db import transaction

from audit.services import audit_event_record
from inference.manifest import manifest_compute
from inference.models import Model, ModelVersion
from inference.services._actors import actor_kwargs
from inference.services.lifecycle import model_version_promote
from inference.services.registry import model_register, model_source_relative, model_version_register


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
                    **actor_kwargs(None),  # type: ignore[arg-type]
                )
                version.manifest = rebuilt
                version.save(update_fields=["manifest"])
        if version.status != ModelVersion.Status.PRODUCTION:
            version = model_version_promote(version=version, actor=None)
    return version
