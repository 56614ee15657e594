"""The project image's names (components/image.py): the pipelines' default ``hybridmi:<version>``, which no edit
outside the version moves, and the tag docker/build.sh gives a checkout's image, a digest of exactly its build context."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from components.image import (
    DEFAULT_IMAGE,
    IMAGE_SOURCES,
    REPO,
    TORCH_VARIANT_SUFFIXES,
    checkout_image,
    checkout_root,
    image_files,
    project_image,
    source_digest,
)

BUILD = REPO / "docker" / "build.sh"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


@pytest.fixture
def context(tmp_path) -> Path:
    """A copy of the files the tag is computed from."""
    for name in IMAGE_SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, tmp_path / name)
    return tmp_path


def print_tag(**env: str) -> subprocess.CompletedProcess[str]:
    """`docker/build.sh --print-tag` with TORCH_VARIANT only as given."""
    inherited = {k: v for k, v in os.environ.items() if k != "TORCH_VARIANT"}
    return subprocess.run(
        ["bash", str(BUILD), "--print-tag"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**inherited, "HOST_PYTHON": sys.executable, **env},
    )


def test_default_image__is_the_package_version_and_no_digest():
    # The installed metadata and pyproject agree (a stale editable install is reinstalled by scripts/setup.sh).
    assert DEFAULT_IMAGE == f"hybridmi:{VERSION}" == f"hybridmi:{metadata.version('hybridmi')}"
    assert not re.search(r"[0-9a-f]{12}", DEFAULT_IMAGE)


def test_default_image__does_not_move_when_the_image_contents_do(context):
    """Computed without reading the sources: an edit anywhere but the version leaves it (and the compiled pipelines) as is."""
    code = (
        "import sys; from components.image import DEFAULT_IMAGE, project_image; print(DEFAULT_IMAGE, project_image())"
    )
    runs = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=context,
            env={**os.environ, "PYTHONPATH": str(context)},
        )
        assert out.returncode == 0, out.stderr
        runs.append(out.stdout.split())
        (context / "hybridmi" / "losses.py").write_text(
            (context / "hybridmi" / "losses.py").read_text() + "\n# changed\n"
        )
    (default_before, tag_before), (default_after, tag_after) = runs
    assert default_before == default_after == DEFAULT_IMAGE
    assert tag_before != tag_after  # the build's tag does follow the contents


def test_tag__is_version_and_digest_and_what_build_sh_prints():
    tag = project_image()
    assert re.fullmatch(rf"hybridmi:{re.escape(VERSION)}-[0-9a-f]{{12}}", tag)
    assert checkout_image() == tag  # what the Docker runner and submit default to in a checkout
    out = print_tag()
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == tag


def test_tag__of_the_cpu_only_image_is_its_own_and_what_build_sh_prints_for_it():
    cuda, cpu = project_image(), project_image(torch_variant="cpu")
    assert cpu == f"{cuda}-cpu" and project_image(torch_variant="cuda") == cuda
    # A CUDA tag ends in the hex digest, a CPU tag in "-cpu": no tree's CPU image can carry another's CUDA tag.
    assert not re.fullmatch(r"hybridmi:\d+\.\d+\.\d+-[0-9a-f]{12}", cpu)
    out = print_tag(TORCH_VARIANT="cpu")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == cpu
    assert len(set(TORCH_VARIANT_SUFFIXES.values())) == len(TORCH_VARIANT_SUFFIXES)


def test_tag__of_an_unknown_torch_variant_is_refused():
    with pytest.raises(ValueError, match="torch variant 'gpu' is not one of cuda, cpu"):
        project_image(torch_variant="gpu")
    out = print_tag(TORCH_VARIANT="gpu")
    assert out.returncode == 2 and "TORCH_VARIANT 'gpu' is not cuda or cpu" in out.stderr


def test_checkout_root__is_the_repository_and_not_an_installed_package(tmp_path):
    assert checkout_root() == REPO
    (tmp_path / "pyproject.toml").write_text(
        ""
    )  # site-packages may hold a stray pyproject.toml, never docker/Dockerfile
    assert checkout_root(tmp_path) is None


def test_digest__follows_the_image_contents_only(context):
    before = source_digest(context)
    assert source_digest(context) == before and project_image(context) == f"hybridmi:{VERSION}-{before}"
    for outside in (
        "pipelines/compiled/hybridmi.yaml",
        "hybridmi/README.md",
        "hybridmi/__pycache__/x.cpython-311.pyc",
        "README.md",
    ):
        (context / outside).parent.mkdir(parents=True, exist_ok=True)
        (context / outside).write_text("changed")
    assert source_digest(context) == before  # not in the image: the tag must not move
    (context / "hybridmi" / "losses.py").write_text((context / "hybridmi" / "losses.py").read_text() + "\n# changed\n")
    changed = source_digest(context)
    assert changed != before
    (context / "docker" / "Dockerfile").write_text((context / "docker" / "Dockerfile").read_text() + "# changed\n")
    assert source_digest(context) not in (before, changed)


def test_digest__of_a_tree_without_the_sources_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="pyproject.toml is missing"):
        source_digest(tmp_path)


def test_dockerignore__admits_what_the_digest_covers():
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    admitted = {line[1:] for line in lines if line.startswith("!")}
    assert admitted == set(IMAGE_SOURCES) - {
        "docker/Dockerfile",
        ".dockerignore",
    }  # those two shape the build, not its context
    assert {"**/__pycache__", "**/*.pyc", "**/*.egg-info", "**/*.md", "pipelines/compiled"} <= set(lines)
    assert not any(p.suffix == ".md" or "compiled" in p.parts for p in image_files())


def test_pipelines_and_components__import_no_runner_at_module_level():
    """One direction: hybridmi/runners imports pipelines; pipelines and components never import it back
    (component bodies do, inside the pod, which is why those imports sit inside the functions)."""
    for package in ("pipelines", "components"):
        for path in (REPO / package).glob("*.py"):
            tree = ast.parse(path.read_text())
            for node in tree.body:  # module level only
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                assert not any(n.startswith("hybridmi.runners") for n in names), (
                    f"{path.relative_to(REPO)} imports {names}"
                )


def test_task_runtime__loads_the_library_only():
    """What a task pod imports (run_task and its helpers) pulls in neither pipelines, components nor kfp: a pod
    runs the library, not the definitions that compile the pipelines."""
    code = (
        "import sys, hybridmi.task.component, hybridmi.task.run; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pipelines', 'components', 'kfp'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
