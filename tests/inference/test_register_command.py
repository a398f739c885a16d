"""`manage.py model_version_register`: a directory becomes a draft version with a manifest."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from inference.demo_model import demo_embed_model_build, demo_model_build
from inference.manifest import manifest_compute
from inference.models import Model, ModelVersion


def test_registers_a_directory_with_its_manifest_and_shows_progress(db: None, tmp_path: Path) -> None:
    demo_model_build(directory=tmp_path / "m")
    out, err = StringIO(), StringIO()
    call_command(
        "model_version_register", "my-model", str(tmp_path / "m"), "--label", "v1", stdout=out, stderr=err
    )
    version = ModelVersion.objects.get(model__name="my-model")
    assert version.status == ModelVersion.Status.DRAFT
    assert version.manifest == manifest_compute(directory=tmp_path / "m")
    assert "Registered my-model@v1 as a draft" in out.getvalue()
    assert "hashing" in err.getvalue()  # the progress bar
    assert AuditEvent.objects.filter(action="model.version.registered").exists()


def test_refuses_a_directory_that_is_not_a_model(db: None, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"no config\.json"):
        call_command("model_version_register", "x", str(tmp_path), "--label", "v1")


def test_a_duplicate_label_is_refused_and_nothing_is_written(db: None, tmp_path: Path) -> None:
    demo_model_build(directory=tmp_path / "m")
    call_command(
        "model_version_register", "my-model", str(tmp_path / "m"), "--label", "v1", stderr=StringIO()
    )
    with pytest.raises(CommandError, match="already exists"):
        call_command(
            "model_version_register", "my-model", str(tmp_path / "m"), "--label", "v1", stderr=StringIO()
        )
    assert ModelVersion.objects.count() == 1


def test_an_encoder_registers_as_an_embedding_model(db: None, tmp_path: Path) -> None:
    demo_embed_model_build(directory=tmp_path / "e")
    call_command(
        "model_version_register",
        "my-embedder",
        str(tmp_path / "e"),
        "--label",
        "v1",
        "--kind",
        "embedding",
        stdout=StringIO(),
        stderr=StringIO(),
    )
    assert Model.objects.get(name="my-embedder").kind == Model.Kind.EMBEDDING
    registered = AuditEvent.objects.get(action="model.registered")
    assert registered.metadata["after"]["kind"] == "embedding"
