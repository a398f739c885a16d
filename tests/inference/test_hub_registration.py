"""Registering from a hub id: fetched once, pinned to a commit, then an ordinary local version.

No hub can be reached here, so the hub client's two calls are replaced by a fake hub that
serves the demo model; everything after the download is the real path.
"""

import shutil
from io import StringIO
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from audit.models import AuditEvent
from inference.engines.base import ChatMessage, GenerationParams
from inference.engines.loader import engine_for_version, engines_clear
from inference.models import Model, ModelVersion

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, source: Path) -> None:
        self.source = source
        self.downloads: list[dict[str, Any]] = []
        self.failure: Exception | None = None

    def model_info(self, repo_id: str, revision: str | None = None) -> SimpleNamespace:
        if self.failure:
            raise self.failure
        return SimpleNamespace(sha=COMMIT)

    def snapshot_download(self, **kwargs: Any) -> str:
        self.downloads.append(kwargs)
        directory = Path(kwargs["local_dir"])
        shutil.copytree(self.source, directory)
        (directory / ".cache" / "huggingface").mkdir(parents=True)
        (directory / ".cache" / "huggingface" / "download.lock").write_text("x")
        return str(directory)


@pytest.fixture
def hub(demo_directory: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    fake = FakeHub(demo_directory)
    monkeypatch.setattr("huggingface_hub.HfApi.model_info", lambda self, *a, **k: fake.model_info(*a, **k))
    monkeypatch.setattr("huggingface_hub.snapshot_download", fake.snapshot_download)
    return fake


@pytest.fixture
def model_root(tmp_path: Path) -> Any:
    with override_settings(GATEHOUSE_MODEL_ROOT=tmp_path / "models"):
        yield tmp_path / "models"


def _register(*extra: str) -> str:
    out = StringIO()
    call_command(
        "model_version_register", "hub-model", "--hub-id", "org/tiny", "--label", "v1", *extra,
        stdout=out, stderr=StringIO(),
    )  # fmt: skip
    return out.getvalue()


def test_a_hub_repository_registers_pinned_to_its_commit_and_serves(
    db: None, hub: FakeHub, model_root: Path
) -> None:
    assert "Registered hub-model@v1 as a draft" in _register("--revision", "main", "--open-to-all")
    version = ModelVersion.objects.get(model__name="hub-model")
    assert (version.hub_repo, version.hub_revision, version.source) == ("org/tiny", COMMIT, "hub-model/v1")
    assert Model.objects.get(name="hub-model").open_to_all
    # The commit was downloaded, not the moving branch, and pickle weights were never fetched.
    assert hub.downloads[0]["revision"] == COMMIT
    assert "*.bin" in hub.downloads[0]["ignore_patterns"]
    assert not any(name.startswith(".cache") for name in version.manifest)
    event = AuditEvent.objects.get(action="model.version.registered", target_id=str(version.pk))
    assert event.metadata["after"]["hub_revision"] == COMMIT
    engines_clear()
    pieces: list[str] = []
    engine_for_version(version=version).generate_stream(
        messages=[ChatMessage(role="user", content="hi")],
        params=GenerationParams(max_tokens=4, temperature=0.0),
        on_token=pieces.extend,
        should_stop=lambda: False,
    )
    engines_clear()
    assert len(pieces) == 4


def test_pickle_weights_are_fetched_only_when_allowed(db: None, hub: FakeHub, model_root: Path) -> None:
    _register("--allow-pickle-weights")
    assert "*.bin" not in hub.downloads[0]["ignore_patterns"]


def test_an_unreachable_hub_is_a_clear_error_and_leaves_nothing_behind(
    db: None, hub: FakeHub, model_root: Path
) -> None:
    hub.failure = httpx.ConnectError("connection refused")
    with pytest.raises(CommandError, match="could not fetch org/tiny@main from the hub"):
        _register()
    assert not Model.objects.filter(name="hub-model").exists()
    assert not ModelVersion.objects.exists()
    assert not (model_root / "hub-model" / "v1").exists()


def test_a_failed_registration_removes_the_download(
    db: None, hub: FakeHub, model_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(**kwargs: Any) -> None:
        raise ValueError("the database refused")

    monkeypatch.setattr("inference.services.registry.model_version_register", refuse)
    with pytest.raises(ValueError, match="refused"):
        _register()
    assert not (model_root / "hub-model" / "v1").exists()
    assert not Model.objects.filter(name="hub-model").exists()


def test_a_directory_and_a_hub_id_together_are_refused(db: None, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="either a model directory or --hub-id"):
        call_command("model_version_register", "x", str(tmp_path), "--hub-id", "org/m", "--label", "v1")
