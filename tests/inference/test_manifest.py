"""SHA-256 manifests: any change to a model's files is caught before load."""

from pathlib import Path

import pytest

from inference.manifest import (
    ManifestMismatch,
    UnsafeWeights,
    manifest_compute,
    manifest_verify,
    weights_policy_check,
)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "weights.safetensors").write_bytes(b"\x00" * 10)
    return tmp_path


def test_manifest_lists_every_file_by_relative_path(model_dir: Path) -> None:
    manifest = manifest_compute(directory=model_dir)
    assert set(manifest) == {"config.json", "sub/weights.safetensors"}
    # sha-256 of "{}"
    assert manifest["config.json"] == "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def test_unchanged_directory_verifies(model_dir: Path) -> None:
    manifest_verify(directory=model_dir, expected=manifest_compute(directory=model_dir))


@pytest.mark.parametrize(
    ("tamper", "expected_message"),
    [
        (
            lambda d: (d / "sub" / "weights.safetensors").write_bytes(b"\x01" * 10),
            "changed ['sub/weights.safetensors']",
        ),
        (lambda d: (d / "config.json").unlink(), "missing ['config.json']"),
        (lambda d: (d / "evil.pkl").write_bytes(b"pickle"), "unexpected ['evil.pkl']"),
    ],
    ids=["changed", "missing", "extra"],
)
def test_tampering_is_detected(model_dir: Path, tamper: object, expected_message: str) -> None:
    manifest = manifest_compute(directory=model_dir)
    tamper(model_dir)  # type: ignore[operator]
    with pytest.raises(ManifestMismatch, match=expected_message.replace("[", r"\[").replace("]", r"\]")):
        manifest_verify(directory=model_dir, expected=manifest)


def test_an_empty_manifest_never_verifies(model_dir: Path) -> None:
    with pytest.raises(ManifestMismatch, match="no manifest"):
        manifest_verify(directory=model_dir, expected={})


def test_a_missing_directory_does_not_verify(tmp_path: Path) -> None:
    with pytest.raises(ManifestMismatch, match="does not exist"):
        manifest_verify(directory=tmp_path / "gone", expected={"config.json": "0" * 64})


@pytest.mark.parametrize("name", ["pytorch_model.bin", "weights.pt", "model.pth", "x.pkl", "last.ckpt"])
def test_pickle_weights_are_refused_unless_allowed(name: str) -> None:
    manifest = {"config.json": "0" * 64, name: "1" * 64}
    with pytest.raises(UnsafeWeights, match="safetensors only"):
        weights_policy_check(manifest=manifest, allow_pickle=False)
    weights_policy_check(manifest=manifest, allow_pickle=True)


def test_safetensors_pass_the_weights_policy() -> None:
    weights_policy_check(
        manifest={"model.safetensors": "0" * 64, "config.json": "1" * 64}, allow_pickle=False
    )
