"""The project image's tag (components/image.py): a digest of exactly the Docker build context, the tag
docker/build.sh gives the image, and the default ``image`` of the compiled pipelines."""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from components.image import (IMAGE_SOURCES, PROJECT_IMAGE, REPO, TORCH_VARIANT_SUFFIXES, image_files, project_image,
                              source_digest)

BUILD = REPO / "docker" / "build.sh"


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
    return subprocess.run(["bash", str(BUILD), "--print-tag"], capture_output=True, text=True, timeout=60,
                          env={**inherited, "HOST_PYTHON": sys.executable, **env})


def test_tag__is_version_and_digest_and_what_build_sh_prints():
    assert re.fullmatch(r"hybridmi:0\.1\.0-[0-9a-f]{12}", PROJECT_IMAGE)
    out = print_tag()
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == PROJECT_IMAGE


def test_tag__of_the_cpu_only_image_is_its_own_and_what_build_sh_prints_for_it():
    cpu = project_image(torch_variant="cpu")
    assert cpu == f"{PROJECT_IMAGE}-cpu" and project_image(torch_variant="cuda") == PROJECT_IMAGE
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


def test_digest__follows_the_image_contents_only(context):
    before = source_digest(context)
    assert source_digest(context) == before and project_image(context) == f"hybridmi:0.1.0-{before}"
    for outside in ("pipelines/compiled/hybridmi.yaml", "hybridmi/README.md", "hybridmi/__pycache__/x.cpython-311.pyc", "README.md"):
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
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")]
    admitted = {line[1:] for line in lines if line.startswith("!")}
    assert admitted == set(IMAGE_SOURCES) - {"docker/Dockerfile", ".dockerignore"}  # those two shape the build, not its context
    assert {"**/__pycache__", "**/*.pyc", "**/*.egg-info", "**/*.md", "pipelines/compiled"} <= set(lines)
    assert not any(p.suffix == ".md" or "compiled" in p.parts for p in image_files())


def test_pipelines_and_components__import_no_runner_at_module_level():
    """One direction: hybridmi/orchestrate imports pipelines; pipelines and components never import it back
    (component bodies do, inside the pod, which is why those imports sit inside the functions)."""
    for package in ("pipelines", "components"):
        for path in (REPO / package).glob("*.py"):
            tree = ast.parse(path.read_text())
            for node in tree.body:  # module level only
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                        [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                assert not any(n.startswith("hybridmi.orchestrate") for n in names), f"{path.relative_to(REPO)} imports {names}"


def test_configure_task__loads_the_library_only():
    """What the configure pod imports (resolve_config_text) pulls in neither pipelines, components nor kfp:
    components/image.py would look for the checkout's sources, which an installed image does not have."""
    code = ("import sys, hybridmi.orchestrate.parameters, hybridmi.orchestrate.task; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pipelines', 'components', 'kfp'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
