"""A venv holding only what the GPU machine has (device_packages.txt) plus the carried wheels, for
``gpu_check.sh --dry-run``: an import the device could not satisfy fails here first.

It links into ``python -m venv --without-pip DIR``'s site-packages the files of every distribution of THIS
environment whose name is on one of those lists (so the versions are this machine's).

    .venv/bin/python bench/device_venv.py DIR      # prints DIR/bin/python
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import subprocess
import sys
from pathlib import Path

CARRIED = ("pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def device_distributions(path: Path = Path(__file__).with_name("device_packages.txt")) -> set[str]:
    """Normalised distribution names the device has, plus the carried ones."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return {normalise(line) for line in lines if line and not line.startswith("#")} | set(CARRIED)


def build(directory: Path) -> Path:
    """Create (or refresh) the venv at ``directory``; returns its python."""
    python = directory / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(directory)], check=True)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([python, "-c", purelib], check=True, capture_output=True, text=True).stdout.strip())
    allowed, linked = device_distributions(), set()
    for dist in metadata.distributions():
        if normalise(dist.metadata["Name"]) not in allowed:
            continue
        for top in {file.parts[0] for file in dist.files or ()} - linked:
            source = Path(dist.locate_file(top))
            if top in ("..", "__pycache__") or top.endswith(".pth") or not source.exists():
                continue
            target = site / top
            if target.is_symlink() or target.exists():
                target.unlink()
            target.symlink_to(source)
            linked.add(top)
    return python


if __name__ == "__main__":
    print(build(Path(sys.argv[1]).resolve()))
