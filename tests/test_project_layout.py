"""The floors of the code base (pyproject.toml's import-linter contracts) hold, and every package is on one."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def floors() -> list[str]:
    """The modules named by the layers contract, top floor first."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return [name.strip() for layer in contract["layers"] for name in layer.replace(":", "|").split("|")]


def test_lint_imports__every_contract_is_kept():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint_imports), "--no-cache"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, f"lint-imports failed:\n{out.stdout}\n{out.stderr}"


def test_floors__name_every_module_at_the_top_of_hybridmi():
    """A module no floor names is checked by no layer: a new one must be given its floor."""
    top = {
        f"hybridmi.{p.stem}"
        for p in (ROOT / "hybridmi").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }
    assert top - set(floors()) == set()


def _tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def test_ruff__lint_is_clean():
    out = subprocess.run(
        [_tool("ruff"), "check", "--no-cache", "."], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert out.returncode == 0, f"ruff check failed:\n{out.stdout}\n{out.stderr}"


def test_ruff__code_is_formatted():
    out = subprocess.run(
        [_tool("ruff"), "format", "--check", "--no-cache", "."], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert out.returncode == 0, f"ruff format --check failed (run `ruff format .`):\n{out.stdout}\n{out.stderr}"


def test_vulture__no_dead_code_at_its_configured_confidence():
    out = subprocess.run([_tool("vulture")], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, f"vulture found dead code:\n{out.stdout}\n{out.stderr}"
