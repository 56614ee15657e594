"""The project image's names: the pipelines' default ``hybridmi:<version>`` and a build's tag (stdlib only; also a script)."""

from __future__ import annotations

import hashlib
import tomllib
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE_NAME = "hybridmi"
# What docker/Dockerfile copies (the .dockerignore allow-list) and the recipe itself.
IMAGE_SOURCES = (
    "pyproject.toml",
    "hybridmi",
    "components",
    "pipelines",
    "configs",
    "docker/requirements.py",
    "docker/Dockerfile",
    ".dockerignore",
)
# The torch builds docker/requirements.py installs and the suffix each adds to the tag.
TORCH_VARIANT_SUFFIXES = {"cuda": "", "cpu": "-cpu"}
# Left out of the build context and of the digest (.dockerignore says the same).
EXCLUDED_DIRS = ("pipelines/compiled",)
EXCLUDED_SUFFIXES = (".pyc", ".md")


def checkout_root(root: Path = REPO) -> Path | None:
    """``root`` when it is a checkout (pyproject.toml and docker/Dockerfile beside the packages); None when installed."""
    return root if (root / "pyproject.toml").is_file() and (root / "docker" / "Dockerfile").is_file() else None


def _pyproject_version(root: Path) -> str:
    return tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]


def package_version() -> str:
    """hybridmi's version: the installed distribution's, else (a checkout on sys.path, not installed) pyproject's."""
    try:
        return metadata.version(IMAGE_NAME)
    except metadata.PackageNotFoundError:
        if checkout_root() is None:
            raise
        return _pyproject_version(REPO)


DEFAULT_IMAGE = f"{IMAGE_NAME}:{package_version()}"


def _excluded(rel: Path) -> bool:
    return (
        rel.as_posix().startswith(tuple(f"{d}/" for d in EXCLUDED_DIRS))
        or rel.suffix in EXCLUDED_SUFFIXES
        or any(part.endswith(".egg-info") or part == "__pycache__" for part in rel.parts)
    )


def image_files(root: Path = REPO) -> list[Path]:
    """The files of the build context under ``root``, sorted by relative path."""
    files = []
    for name in IMAGE_SOURCES:
        top = root / name
        if not top.exists():
            raise FileNotFoundError(f"{top} is missing: the image tag is computed from a checkout of the repository")
        for path in [top] if top.is_file() else sorted(top.rglob("*")):
            if path.is_file() and not _excluded(path.relative_to(root)):
                files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def source_digest(root: Path = REPO) -> str:
    """12 hex digits of sha256 over (relative path, sha256 of content) of every build-context file."""
    outer = hashlib.sha256()
    for path in image_files(root):
        outer.update(path.relative_to(root).as_posix().encode() + b"\0")
        outer.update(hashlib.sha256(path.read_bytes()).hexdigest().encode() + b"\n")
    return outer.hexdigest()[:12]


def project_image(root: Path = REPO, *, torch_variant: str = "cuda") -> str:
    """``hybridmi:<pyproject version>-<source digest><variant suffix>``: the tag docker/build.sh gives the image of ``root``."""
    if torch_variant not in TORCH_VARIANT_SUFFIXES:
        raise ValueError(f"torch variant {torch_variant!r} is not one of {', '.join(TORCH_VARIANT_SUFFIXES)}")
    digest = source_digest(root)  # first: it names a missing source file
    return f"{IMAGE_NAME}:{_pyproject_version(root)}-{digest}{TORCH_VARIANT_SUFFIXES[torch_variant]}"


def checkout_image(*, torch_variant: str = "cuda", needed_for: str = "this command") -> str:
    """The tag docker/build.sh gives the image of the checkout this code runs from; ValueError from an installed package."""
    root = checkout_root()
    if root is None:
        raise ValueError(
            f"{needed_for} needs --image: hybridmi runs from an installed package ({REPO}), not a checkout, "
            "so there is no docker/build.sh tag to default to"
        )
    return project_image(root, torch_variant=torch_variant)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Print the tag docker/build.sh gives this checkout's image.")
    parser.add_argument("--torch-variant", choices=tuple(TORCH_VARIANT_SUFFIXES), default="cuda")
    print(project_image(torch_variant=parser.parse_args().torch_variant))
