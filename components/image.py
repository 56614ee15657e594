"""The project image's immutable tag: ``hybridmi:<version>-<source digest>[-cpu]`` (stdlib only; also a script).

The digest is a sha256 over the files the Docker build context holds (``.dockerignore`` admits
exactly ``IMAGE_SOURCES``, minus caches and ``pipelines/compiled``) plus ``docker/Dockerfile``:
relative path and content of each. So the tag names what is inside the image, whatever the git
state: an unchanged tree gives the same tag (KFP's cache, keyed on the image string, stays valid),
any change to what the image holds gives a new one. A git sha could not serve as the default of
``pipelines/compiled``: those files are committed, and a commit cannot contain its own sha.

The torch variant (build argument ``TORCH_VARIANT``, docker/requirements.py) is not in the context,
so it goes into the tag itself: the CPU-only image is ``…-<digest>-cpu``, the CUDA image has no
suffix, and the two never share a tag.

``docker/build.sh`` tags the image it builds with ``python components/image.py [--torch-variant cpu]``
(this file run as a script prints the tag); the pipelines default their ``image`` parameter to
``PROJECT_IMAGE``, the tag of this checkout's CUDA image. Changing anything under ``IMAGE_SOURCES``
therefore changes the compiled pipelines: regenerate them (``hybridmi compile``; the golden test says so).
"""
from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE_NAME = "hybridmi"
# What docker/Dockerfile copies (the .dockerignore allow-list) and the recipe itself.
IMAGE_SOURCES = ("pyproject.toml", "hybridmi", "components", "pipelines", "configs", "docker/requirements.py",
                 "docker/Dockerfile", ".dockerignore")
# The torch builds docker/requirements.py installs and the suffix each adds to the tag.
TORCH_VARIANT_SUFFIXES = {"cuda": "", "cpu": "-cpu"}
# Left out of the build context and of the digest (.dockerignore says the same): caches, build
# metadata, documentation, and the compiled pipelines (they contain the tag, so it cannot be
# computed from them).
EXCLUDED_DIRS = ("pipelines/compiled",)
EXCLUDED_SUFFIXES = (".pyc", ".md")


def _excluded(rel: Path) -> bool:
    return rel.as_posix().startswith(tuple(f"{d}/" for d in EXCLUDED_DIRS)) or rel.suffix in EXCLUDED_SUFFIXES or any(
        part.endswith(".egg-info") or part == "__pycache__" for part in rel.parts)


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
    """``hybridmi:<pyproject version>-<source digest><variant suffix>``: the tag docker/build.sh gives this tree's image."""
    if torch_variant not in TORCH_VARIANT_SUFFIXES:
        raise ValueError(f"torch variant {torch_variant!r} is not one of {', '.join(TORCH_VARIANT_SUFFIXES)}")
    version = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    return f"{IMAGE_NAME}:{version}-{source_digest(root)}{TORCH_VARIANT_SUFFIXES[torch_variant]}"


PROJECT_IMAGE = project_image()

if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Print the tag docker/build.sh gives this checkout's image.")
    parser.add_argument("--torch-variant", choices=tuple(TORCH_VARIANT_SUFFIXES), default="cuda")
    print(project_image(torch_variant=parser.parse_args().torch_variant))
