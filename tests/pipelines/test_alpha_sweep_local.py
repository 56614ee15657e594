"""The α sweep under kfp.local: ParallelFor over α in a nested pipeline, Collected metrics, one trade-off table."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from hybridmi.runners.local import run_local

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"


def test_alpha_sweep__one_row_per_alpha_with_that_alphas_probe_and_mse(tiny, tmp_path):
    run = run_local(
        SMOKE,
        tiny,
        runner="subprocess",
        pipeline_root=tmp_path,
        pipeline="alpha_sweep",
        parameters={"alphas": [0.8, 0.2]},
    )
    rows = list(csv.DictReader(io.StringIO(run.artifact("tradeoff", "table_csv").read_text())))
    assert [float(r["alpha"]) for r in rows] == [0.2, 0.8]
    for i, row in enumerate(rows):  # each row holds the numbers its own branch's stages wrote
        branch = [
            d
            for d in run.run_dir.glob("for-loop-*-iteration-*")
            if f"alpha: {row['alpha']}" in (d / "probe" / "metrics" / "config.yaml").read_text()
        ]
        assert len(branch) == 1
        probe = json.loads((branch[0] / "probe" / "metrics" / "metrics.json").read_text())
        recon = json.loads((branch[0] / "reconstruction" / "metrics" / "metrics.json").read_text())
        assert float(row["linear_acc_z"]) == probe["linear_acc_z"] and float(row["mse"]) == recon["mse"]
    assert run.artifact("tradeoff", "table").read_text().count("\n") == 2 + len(rows)
    page = run.artifact("tradeoff", "plot").read_text()
    assert (
        "data:image/png;base64," in page and "No paper rows" in page
    )  # synthetic data: the paper's rows are not marked
