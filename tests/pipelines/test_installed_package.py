"""A non-editable install works outside the checkout: `pip install .` into a fresh venv, then the CLI from another directory.

The venv reuses the project venv's packages (torch, kfp, and setuptools as the build backend: torch requires
setuptools ≥ 77, which builds wheels itself) through a ``.pth`` line naming its site-packages, so nothing is
downloaded; a plain path line does not run that directory's own ``.pth`` files, so the editable install of the
checkout stays out of reach. The package is built from a copy of the sources: the build writes nothing into
the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from components.image import DEFAULT_IMAGE, REPO
from hybridmi.runners.compile import COMPILED_DIR
from hybridmi.stages import STAGE_NAMES, stage_module
from hybridmi.stages.common import read_sidecar

pytestmark = pytest.mark.install

PACKAGES = ("hybridmi", "components", "pipelines")  # pyproject's [tool.setuptools.packages.find]


def _sh(*args: str, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{' '.join(result.args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """A venv with hybridmi installed from a copy of the sources; env and a working directory outside the checkout."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    for name in PACKAGES:
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "compiled"))
    shutil.copy(REPO / "pyproject.toml", src / "pyproject.toml")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    (site / "project-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    start = time.monotonic()
    _ok(
        _sh(
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--ignore-installed",
            str(src),
            cwd=work,
            env=env,
            timeout=600,
        )
    )
    return {"venv": venv, "site": site, "work": work, "env": env, "install_s": time.monotonic() - start}


def hybridmi(installed: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The installed console script, run from the directory outside the checkout."""
    return _sh(
        str(installed["venv"] / "bin" / "hybridmi"), *args, cwd=installed["work"], env=installed["env"], timeout=timeout
    )


def test_installed__imports_the_venvs_copy_and_not_the_checkout(installed):
    code = (
        "import json, components, hybridmi, pipelines; from components.image import DEFAULT_IMAGE, checkout_root; "
        "print(json.dumps({'files': [m.__file__ for m in (hybridmi, components, pipelines)], "
        "'image': DEFAULT_IMAGE, 'checkout': str(checkout_root())}))"
    )
    found = json.loads(
        _ok(
            _sh(
                str(installed["venv"] / "bin" / "python"),
                "-c",
                code,
                cwd=installed["work"],
                env=installed["env"],
                timeout=300,
            )
        )
    )
    assert all(Path(f).is_relative_to(installed["site"]) for f in found["files"]), found["files"]
    assert found["image"] == DEFAULT_IMAGE and found["checkout"] == "None"


def test_installed__compiles_the_committed_pipelines_and_prints_submit_help(installed):
    out = installed["work"] / "compiled"
    written = _ok(hybridmi(installed, "compile", "--out", str(out))).split()
    assert sorted(Path(p).name for p in written) == sorted(p.name for p in COMPILED_DIR.glob("*.yaml"))
    for path in written:  # nothing in the IR depends on where the package lives
        assert Path(path).read_text() == (COMPILED_DIR / Path(path).name).read_text(), (
            f"{path} differs from the committed file"
        )
    assert _ok(hybridmi(installed, "submit", "--help")).startswith("usage: hybridmi submit")


REFUSALS = """
import contextlib, io, json, sys
from hybridmi.cli import main
found = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        found.append([main(argv), err.getvalue()])
print(json.dumps(found))
"""


def test_installed__submit_and_the_docker_runner_refuse_without_an_image_in_one_line(installed):
    """An installed package has no checkout to compute a build's tag from, and the compiled default names no build.
    (Both commands in one interpreter: each imports the pipelines, which takes seconds.)"""
    smoke = str(shutil.copy(REPO / "configs" / "smoke.yaml", installed["work"] / "smoke.yaml"))
    commands = {
        "hybridmi submit": ["submit", "--host", "http://127.0.0.1:9", "--config", smoke],
        "the docker runner": ["run", "--runner", "docker", "--config", smoke, "--root", "refused"],
    }
    found = json.loads(
        _ok(
            _sh(
                str(installed["venv"] / "bin" / "python"),
                "-c",
                REFUSALS,
                json.dumps(list(commands.values())),
                cwd=installed["work"],
                env=installed["env"],
                timeout=300,
            )
        )
    )
    for who, (code, err) in zip(commands, found):
        assert code == 1 and "Traceback" not in err, err
        assert f"hybridmi: error: {who} needs --image" in err


def test_installed__runs_the_smoke_pipeline_from_a_copied_preset(installed, tiny):
    """Every stage under kfp.local's SubprocessRunner, each task a child of the venv's interpreter."""
    smoke = shutil.copy(REPO / "configs" / "smoke.yaml", installed["work"] / "smoke-run.yaml")
    sets = [arg for override in tiny for arg in ("--set", override)]
    result = hybridmi(
        installed, "run", "--config", str(smoke), "--root", "runs", "--store", "none", *sets, "--json", timeout=900
    )
    out = _ok(result)
    run = json.loads(out[out.rfind("\n{\n") + 1 :])  # kfp.local streams the task logs to stdout before it
    assert Path(run["run_dir"]).is_relative_to(installed["work"])
    for stage in STAGE_NAMES:
        for output in stage_module(stage).OUTPUTS:
            assert read_sidecar(Path(run["outputs"][stage][output]))["stage"] == stage
