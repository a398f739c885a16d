"""The demo models of SPEC §7, built and registered on first use."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction

from audit.services import audit_event_record
from inference.manifest import manifest_compute
from inference.models import Model, ModelVersion
from inference.services._actors import actor_kwargs
from inference.services.lifecycle import model_version_promote
from inference.services.registry import (
    model_register,
    model_source_relative,
    model_version_register,
    model_version_update,
)


@dataclass(frozen=True)
class _Demo:
    name: str
    description: str
    kind: str
    build: Callable[..., None]
    tool_call_format: str = ModelVersion.ToolCallFormat.NONE


def _demos() -> dict[str, _Demo]:
    from inference.demo_model import (
        DEMO_EMBED_MODEL_NAME,
        DEMO_MODEL_NAME,
        demo_embed_model_build,
        demo_model_build,
    )

    return {
        DEMO_MODEL_NAME: _Demo(
            name=DEMO_MODEL_NAME,
            description="Tiny GPT-2 built locally for demos and tests; its output is noise.",
            kind=Model.Kind.CHAT,
            build=demo_model_build,
            tool_call_format=ModelVersion.ToolCallFormat.HERMES,
        ),
        DEMO_EMBED_MODEL_NAME: _Demo(
            name=DEMO_EMBED_MODEL_NAME,
            description="Tiny BERT encoder built locally for demos and tests; its vectors are noise.",
            kind=Model.Kind.EMBEDDING,
            build=demo_embed_model_build,
        ),
    }


def demo_model_ensure() -> ModelVersion:
    """Build, register and promote the demo chat model, `demo-tiny` (SPEC §7); idempotent."""
    from inference.demo_model import DEMO_MODEL_NAME

    return _demo_ensure(_demos()[DEMO_MODEL_NAME])


def demo_embed_model_ensure() -> ModelVersion:
    """Build, register and promote the demo embedding model, `demo-embed`; idempotent."""
    from inference.demo_model import DEMO_EMBED_MODEL_NAME

    return _demo_ensure(_demos()[DEMO_EMBED_MODEL_NAME])


def _demo_ensure(demo: _Demo) -> ModelVersion:
    """Registration records the manifest of the directory as it is, as for any model. Once
    registered, files that still match the manifest are reused; missing or changed files
    are rebuilt. The build is deterministic, so a rebuild normally reproduces the recorded
    manifest; when it does not (another transformers release) the new one is recorded and
    audited.
    """
    from inference.demo_model import DEMO_CONTEXT_LENGTH, DEMO_VERSION_LABEL
    from inference.manifest import ManifestMismatch, manifest_verify

    directory = Path(settings.GATEHOUSE_MODEL_ROOT) / demo.name / DEMO_VERSION_LABEL
    model = Model.objects.filter(name=demo.name).first()
    version = model.versions.filter(label=DEMO_VERSION_LABEL).first() if model else None
    if version is None:
        if not directory.is_dir():
            demo.build(directory=directory)
    else:
        try:
            manifest_verify(directory=directory, expected=version.manifest)
        except ManifestMismatch:
            demo.build(directory=directory)

    with transaction.atomic():
        if model is None:
            model = model_register(
                name=demo.name,
                description=demo.description,
                open_to_all=True,
                max_tokens_cap=256,
                kind=demo.kind,
                actor=None,
            )
        if version is None:
            version = model_version_register(
                model=model,
                label=DEMO_VERSION_LABEL,
                source=model_source_relative(directory=directory),
                context_length=DEMO_CONTEXT_LENGTH,
                tool_call_format=demo.tool_call_format,
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
        if version.tool_call_format != demo.tool_call_format:  # registered before the demo offered tools
            version = model_version_update(
                version=version, changes={"tool_call_format": demo.tool_call_format}, actor=None
            )
        if version.status != ModelVersion.Status.PRODUCTION:
            version = model_version_promote(version=version, actor=None)
    return version
