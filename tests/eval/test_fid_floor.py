"""bench/fid_floor.py on small data: the FID of test images against train statistics, cached under the fid stage's key."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_fid_floor__scores_test_against_train_at_equal_n_and_caches_the_fid_stages_statistics(real_weights, tmp_path):
    command = [
        sys.executable,
        str(ROOT / "bench" / "fid_floor.py"),
        "--config",
        str(ROOT / "configs" / "smoke.yaml"),
        "--set",
        "data.synthetic_train=30",
        "--set",
        "data.synthetic_test=20",
        "--set",
        f"data.cache_dir={tmp_path / 'data'}",
        "--set",
        f"fid.weights={real_weights}",
        "--num",
        "12",
        "--json",
        str(tmp_path / "floor.json"),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYBRIDMI_FID_CACHE": str(tmp_path / "fid"), "OMP_NUM_THREADS": "1"}
    first = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    result = json.loads((tmp_path / "floor.json").read_text())
    assert result["num"] == 12 and result["seed"] == 0 and result["weights_recorded"]
    assert result["fid"] > 1.0  # different images: clearly above the ~0 of a set against itself
    cached = sorted(p.name for p in (tmp_path / "fid").glob("*.npz"))
    assert cached == sorted(
        f"fid-{result[k][:32]}-{result['weights_sha256'][:16]}-n12s0.npz" for k in ("train_checksum", "test_checksum")
    )
    second = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert second.returncode == 0 and json.loads((tmp_path / "floor.json").read_text())["fid"] == result["fid"]
    assert f"{result['fid']:.2f}" in second.stdout
