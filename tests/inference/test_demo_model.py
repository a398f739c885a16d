"""SPEC §7: the demo model is built offline, deterministically, as a normal HF directory."""

from pathlib import Path
from typing import Any

import pytest

from audit.models import AuditEvent
from inference.demo_model import DEMO_MODEL_NAME, demo_model_build
from inference.engines.local import LocalTransformersEngine
from inference.manifest import ManifestMismatch, manifest_compute
from inference.models import ModelVersion
from inference.services import demo_model_ensure


def test_build_is_deterministic_and_a_plain_hugging_face_directory(tmp_path: Path) -> None:
    demo_model_build(directory=tmp_path / "a")
    demo_model_build(directory=tmp_path / "b")
    first = manifest_compute(directory=tmp_path / "a")
    assert first == manifest_compute(directory=tmp_path / "b")
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(first)
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in first), (
        "pickle weights in the demo model"
    )


def test_loads_through_the_auto_classes(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    demo_model_build(directory=tmp_path / "m")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "m", local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m", local_files_only=True, use_safetensors=True)
    assert model.config.model_type == "gpt2"
    # Byte-level: any text round-trips, accents included.
    assert tokenizer.decode(tokenizer.encode("héllo wörld")) == "héllo wörld"
    assert tokenizer.chat_template


def test_bootstrap_registers_and_promotes_demo_tiny(demo_version: ModelVersion) -> None:
    assert demo_version.model.name == DEMO_MODEL_NAME
    assert demo_version.model.open_to_all
    assert demo_version.status == ModelVersion.Status.PRODUCTION
    assert demo_version.manifest == manifest_compute(directory=demo_version.source_path)
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"model.registered", "model.version.registered", "model.version.promoted"} <= actions


def test_demo_model_ensure_is_idempotent(demo_version: ModelVersion) -> None:
    again = demo_model_ensure()
    assert again.pk == demo_version.pk
    assert ModelVersion.objects.count() == 1
    assert AuditEvent.objects.filter(action="model.version.promoted").count() == 1


def _files_written_at(root: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}


def test_a_corrupted_demo_model_is_rebuilt_to_the_recorded_manifest(
    db: None, tmp_path: Path, model_root: Path, settings: Any
) -> None:
    """On a model root of the test's own: the suite's demo model is read by other tests (and,
    in the production profile, by a worker) while this one runs, so it is never corrupted."""
    shared_files = _files_written_at(model_root)
    settings.GATEHOUSE_MODEL_ROOT = tmp_path
    version = demo_model_ensure()
    weights = version.source_path / "model.safetensors"
    assert tmp_path in weights.parents
    original = weights.read_bytes()
    weights.write_bytes(original[:-8] + b"tampered")
    repaired = demo_model_ensure()
    assert repaired.manifest == version.manifest
    assert weights.read_bytes() == original
    assert _files_written_at(model_root) == shared_files


def test_the_engine_refuses_files_that_do_not_match_the_manifest(demo_version: ModelVersion) -> None:
    manifest = dict(demo_version.manifest)
    manifest["model.safetensors"] = "0" * 64
    with pytest.raises(ManifestMismatch, match="changed"):
        LocalTransformersEngine(
            directory=demo_version.source_path, manifest=manifest, context_length=demo_version.context_length
        )
