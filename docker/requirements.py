"""The project image's requirement list for one torch variant (stdlib only; run as a script).

pyproject's dependencies plus the build backend (``setuptools>=68``, ``wheel``): docker/build.sh
fills its wheelhouse from this list and docker/Dockerfile installs it, so both take it from here.

- ``cuda``: the list as it is; the index's torch wheels carry their CUDA libraries.
- ``cpu``: torch and torchvision pinned to the same versions' CPU-only wheels (local version
  ``+cpu``, from PyTorch's CPU index, named in the list as an extra index): no CUDA libraries, for
  clusters without GPUs such as kind in CI. With ``pip install --no-index`` the index line is ignored.

    python3 docker/requirements.py [--torch-variant cuda|cpu] [PYPROJECT]   # default cuda, ./pyproject.toml

components/image.py gives each variant its own tag.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

BUILD_BACKEND = ("setuptools>=68", "wheel")
# Per variant: the index holding its torch wheels and their local version label (None: the default index).
TORCH_VARIANTS = {"cuda": None, "cpu": ("https://download.pytorch.org/whl/cpu", "cpu")}
TORCH_PACKAGES = ("torch", "torchvision")
_PINNED = re.compile(r"(?P<name>[A-Za-z0-9._-]+)\s*==\s*(?P<version>[0-9][A-Za-z0-9.]*)")
_NAME = re.compile(r"[A-Za-z0-9._-]+")


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
        name = _NAME.match(line.strip())
        if name is None or name.group().lower() not in TORCH_PACKAGES:
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", nargs="?", type=Path, default=Path("pyproject.toml"))
    parser.add_argument("--torch-variant", choices=tuple(TORCH_VARIANTS), default="cuda")
    args = parser.parse_args(argv)
    dependencies = tomllib.loads(args.pyproject.read_text())["project"]["dependencies"]
    print("\n".join(image_requirements(dependencies, torch_variant=args.torch_variant)))


if __name__ == "__main__":
    main()
