"""Compile the pipelines to KFP IR YAML (what `hybridmi compile` writes and the golden test checks)."""
from __future__ import annotations

import sys
from pathlib import Path

COMPILED_DIR = Path(__file__).resolve().parents[2] / "pipelines" / "compiled"
REGENERATE = "hybridmi compile --out pipelines/compiled  (or: python -m hybridmi.orchestrate.compile pipelines/compiled)"


def compile_pipeline(pipeline_func, path: str | Path) -> Path:
    """Compile one pipeline function to ``path``."""
    from kfp import compiler

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_func, str(path))
    return path


def compile_pipelines(out_dir: str | Path) -> list[Path]:
    """Write every pipeline of ``pipelines.COMPILED`` (hybridmi.yaml, alpha_sweep.yaml) into ``out_dir``."""
    from pipelines import COMPILED

    return [compile_pipeline(func, Path(out_dir) / name) for name, func in COMPILED.items()]


if __name__ == "__main__":
    for written in compile_pipelines(sys.argv[1] if len(sys.argv) > 1 else COMPILED_DIR):
        print(written)
