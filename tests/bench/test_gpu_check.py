"""bench/gpu_check.sh --dry-run: the GPU check's entry point end to end on the CPU, in a device-like venv."""

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np

from bench.device_venv import device_distributions

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_dry_run__runs_every_phase_with_only_the_devices_packages(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "HYBRIDMI_DEVICE_VENV": str(tmp_path / "venv"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["bash", "bench/gpu_check.sh", "--dry-run", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| linear acc. y / ŷ / z" in proc.stdout and "| throughput / MFU" in proc.stdout
    report = json.loads((out / "gpu_check.json").read_text())
    assert set(report["seconds"]) == {"peak", "data", "flops", "syncs", "ranks", "train", "eval", "ddim"}
    ranks = report["ranks"]  # the 1-GPU vs N-GPU row, rehearsed with 2 gloo ranks
    assert (ranks["one"]["ranks"], ranks["many"]["ranks"]) == (1, 2) and ranks["speedup"] > 0
    assert re.search(r"\| 1 vs N GPUs \(DDP, eager\) +\| 1: \d+ images/s; 2: \d+ images/s", proc.stdout)
    assert report["host_syncs_per_step"] == 0
    assert report["train"]["run_length"]["estimated_at_step"] is not None  # the fixed-time run path
    assert 0 < report["train"]["mfu"] and report["flops_per_image"] > 0
    assert all(0.0 <= report["eval"][f"linear_acc_{k}"] <= 1.0 for k in ("y", "yhat", "z"))
    assert report["eval"]["mse"] > 0
    imported = set(report["imported_distributions"])
    assert {"torch", "pydantic"} <= imported
    assert imported <= device_distributions(), imported - device_distributions()
    assert not imported & {"kfp", "minio", "pytorch-fid", "moto", "boto3"}
    samples = np.load(out / "samples.npz")["images"]
    assert samples.dtype == np.uint8 and samples.shape == (report["ddim"]["num_samples"], 32, 32, 3)
