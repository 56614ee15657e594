"""The project image's requirement list for one torch variant (stdlib only; docker/build.sh fills its
wheelhouse from it and docker/Dockerfile installs it).

pyproject's dependencies plus the build backend. ``cuda``: the list as it is (the index's torch wheels carry
their CUDA libraries). ``cpu``: torch and torchvision pinned to the same versions' CPU-only wheels (``+cpu``,
from PyTorch's CPU index, named as an extra index), for clusters without GPUs such as kind in CI.

    python3 docker/requirements.py [--torch-variant cuda|cpu] [PYPROJECT]
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

BUILD_BACKEND = ("setuptools>=68", "wheel")
# Per variant: the index holding its torch wheels and their local version label (None: the default index).
TORCH_VARIANTS = {"cuda": None, "cpu": ("https://download.pytorch.org/whl/cpu", "cpu")}
_PINNED = re.compile(r"(?P<name>[A-Za-z0-9._-]+)\s*==\s*(?P<version>[0-9][A-Za-z0-9.]*)")


def image_requirements(dependencies: list[str], *, torch_variant: str) -> list[str]:
    """The lines of the image's requirements file: ``dependencies`` + the build backend, torch as ``torch_variant``."""
    if torch_variant not in TORCH_VARIANTS:
        raise ValueError(f"torch variant {torch_variant!r} is not one of {', '.join(TORCH_VARIANTS)}")
    lines = [*dependencies, *BUILD_BACKEND]
    if TORCH_VARIANTS[torch_variant] is None:
        return lines
    index, label = TORCH_VARIANTS[torch_variant]
    rewritten, found = [], set()
    for line in lines:
        name = re.match(r"[A-Za-z0-9._-]+", line.strip())
        if name is None or name.group().lower() not in ("torch", "torchvision"):
            rewritten.append(line)
            continue
        pinned = _PINNED.fullmatch(line.strip())
        if pinned is None:
            raise ValueError(
                f"{line!r} is not pinned as NAME==VERSION; the {torch_variant} variant needs the exact version"
            )
        found.add(pinned["name"].lower())
        rewritten.append(f"{pinned['name']}=={pinned['version']}+{label}")
    if "torch" not in found:
        raise ValueError(f"the dependencies name no torch; the {torch_variant} variant replaces its wheels")
    return [f"--extra-index-url {index}", *rewritten]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", nargs="?", type=Path, default=Path("pyproject.toml"))
    parser.add_argument("--torch-variant", choices=tuple(TORCH_VARIANTS), default="cuda")
    args = parser.parse_args()
    dependencies = tomllib.loads(args.pyproject.read_text())["project"]["dependencies"]
    print("\n".join(image_requirements(dependencies, torch_variant=args.torch_variant)))
