"""docker/requirements.py: the image's requirement list per torch variant (no Docker needed).

Run as a script, as docker/build.sh (for the wheelhouse) and docker/Dockerfile (for the install) run it.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from components.image import TORCH_VARIANT_SUFFIXES

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docker" / "requirements.py"
DEPENDENCIES = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def requirements(*args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), *args, str(ROOT / "pyproject.toml")], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@pytest.fixture(scope="module")
def module():
    """docker/requirements.py as a module (``docker`` is not a package, and the name is the Docker SDK's)."""
    spec = importlib.util.spec_from_file_location("image_requirements", SCRIPT)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def test_cuda__is_pyprojects_list_and_the_build_backend_unchanged():
    # The same lines, in the same order, as before variants existed: the CUDA dependency layer stays cached.
    assert requirements() == requirements("--torch-variant", "cuda") == [*DEPENDENCIES, "setuptools>=68", "wheel"]


def test_cpu__pins_torch_and_torchvision_to_the_same_versions_cpu_wheels():
    cuda, cpu = requirements(), requirements("--torch-variant", "cpu")
    assert cpu[0] == f"--extra-index-url {CPU_INDEX}"
    assert "torch==2.14.1" in cuda and "torchvision==0.29.1" in cuda
    assert cpu[1:] == [f"{line}+cpu" if line.split("==")[0] in ("torch", "torchvision") else line for line in cuda]


def test_cpu__refuses_a_torch_that_is_not_pinned_exactly(module):
    with pytest.raises(ValueError, match="'torch>=2.14' is not pinned as NAME==VERSION"):
        module.image_requirements(["torch>=2.14", "numpy"], torch_variant="cpu")
    with pytest.raises(ValueError, match="name no torch"):
        module.image_requirements(["numpy==2.0"], torch_variant="cpu")
    with pytest.raises(ValueError, match="torch variant 'rocm' is not one of cuda, cpu"):
        module.image_requirements(["torch==2.14.1"], torch_variant="rocm")
    assert module.image_requirements(["torch==2.14.1", "torch-fidelity==0.3"], torch_variant="cpu")[1:3] == [
        "torch==2.14.1+cpu",
        "torch-fidelity==0.3",
    ]  # only torch and torchvision themselves


def test_variants__are_the_ones_the_image_tag_knows(module):
    assert set(module.TORCH_VARIANTS) == set(TORCH_VARIANT_SUFFIXES)
