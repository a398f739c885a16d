"""SHA-256 manifests of model directories: computed at registration, verified before load."""

import hashlib
from collections.abc import Callable
from pathlib import Path

_CHUNK = 1024 * 1024


class ManifestMismatch(Exception):
    """The files on disk are not the files that were registered."""


class UnsafeWeights(ManifestMismatch):
    """Pickle weight files, which can run code when loaded, in a version not allowed them."""


# Formats torch loads with pickle; safetensors holds only tensors.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def weights_policy_check(*, manifest: dict[str, str], allow_pickle: bool) -> None:
    pickled = sorted(name for name in manifest if name.endswith(PICKLE_SUFFIXES))
    if pickled and not allow_pickle:
        raise UnsafeWeights(
            f"pickle weight files {pickled} are not allowed for this version (safetensors only)"
        )


# Called with the number of bytes just hashed (drives a progress bar for large weights).
Progress = Callable[[int], None]


def file_sha256(path: Path, *, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return digest.hexdigest()


def model_files(*, directory: Path) -> list[Path]:
    return [path for path in sorted(directory.rglob("*")) if path.is_file()]


def manifest_compute(*, directory: Path, progress: Progress | None = None) -> dict[str, str]:
    """Hash every regular file under `directory`, keyed by its POSIX path relative to it."""
    return {
        path.relative_to(directory).as_posix(): file_sha256(path, progress=progress)
        for path in model_files(directory=directory)
    }


def manifest_verify(*, directory: Path, expected: dict[str, str]) -> None:
    """Raise ManifestMismatch unless `directory` holds exactly the expected files and bytes."""
    if not expected:
        raise ManifestMismatch("no manifest was recorded for this version")
    if not directory.is_dir():
        raise ManifestMismatch(f"model directory {directory.name!r} does not exist")
    actual = manifest_compute(directory=directory)
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    changed = sorted(name for name in set(expected) & set(actual) if expected[name] != actual[name])
    if missing or extra or changed:
        problems = []
        if missing:
            problems.append(f"missing {missing}")
        if extra:
            problems.append(f"unexpected {extra}")
        if changed:
            problems.append(f"changed {changed}")
        raise ManifestMismatch("model files do not match the manifest: " + "; ".join(problems))
