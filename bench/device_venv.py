"""A virtual environment holding only what the GPU device machine has, for ``gpu_check.sh --dry-run``.

The device (bench/device_packages.txt) has no kfp, minio, pytorch-fid or pydantic; the GPU check carries
pydantic as wheels (``CARRIED``). This builds ``python -m venv --without-pip DIR`` and links into its
site-packages the files of every distribution of THIS environment whose name is on one of those two
lists, so an import of anything else fails in the dry run as it would on the device. (The versions are
this machine's: torch 2.14.1 here, 2.11 there.)

    .venv/bin/python bench/device_venv.py DIR      # prints DIR/bin/python
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CARRIED = ("pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def device_distributions(path: Path = HERE / "device_packages.txt") -> set[str]:
    """Normalised distribution names the device has, plus the carried ones."""
    names = {
        normalise(line.strip()) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    }
    return names | set(CARRIED)


def build(directory: Path) -> Path:
    """Create (or refresh) the venv at ``directory``; returns its python."""
    python = directory / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(directory)], check=True)
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    allowed = device_distributions()
    linked = set()
    for dist in metadata.distributions():
        if normalise(dist.metadata["Name"]) not in allowed or not dist.files:
            continue
        for file in dist.files:
            top = file.parts[0]
            if top in linked or top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            source = Path(dist.locate_file(top))
            if source.exists():
                target = site / top
                if target.is_symlink() or target.exists():
                    target.unlink()
                target.symlink_to(source)
                linked.add(top)
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    print(build(parser.parse_args().directory.resolve()))


if __name__ == "__main__":
    main()
