"""SPEC §1: platform/ is imported as `gatehouse` and never shadows the standard library."""

import importlib
import importlib.metadata
import shutil
import subprocess
import sys

import pytest
from django.conf import settings


def test_platform_is_the_standard_library_module() -> None:
    import platform

    assert platform.system()  # the stdlib function, not our project package
    assert "site-packages" not in (platform.__file__ or "")
    assert platform.__file__ is not None
    assert platform.__file__.endswith("platform.py")


def test_gatehouse_settings_import_from_platform_directory() -> None:
    module = importlib.import_module("gatehouse.settings")
    assert module.__file__ is not None
    assert module.__file__.endswith("platform/settings.py")


def test_platform_directory_has_no_init_file() -> None:
    assert not (settings.BASE_DIR / "platform" / "__init__.py").exists()


def test_stdlib_platform_wins_when_run_from_the_repository_root() -> None:
    # Scripts run from the repository root have it first on sys.path, where platform/ lives.
    result = subprocess.run(
        [sys.executable, "-c", "import platform, gatehouse.settings; print(platform.system())"],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in ("Linux", "Darwin", "Windows")


@pytest.mark.skipif(
    shutil.which("nvidia-smi") is not None, reason="this machine has a GPU: CUDA torch is expected"
)
def test_cpu_machine_has_cpu_torch_and_no_cuda_packages() -> None:
    import torch

    assert torch.version.cuda is None, f"CUDA build {torch.__version__} installed on a CPU-only machine"
    cuda_packages = sorted(
        dist.metadata["Name"]
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"] and dist.metadata["Name"].lower().startswith("nvidia-")
    )
    assert cuda_packages == []
