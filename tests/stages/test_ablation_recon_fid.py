"""bench/ablation.py --recon-fid: the reconstruction FID of each finished run, by the fid stage's protocol, kept."""

import json
import shutil

import pytest
import yaml

from bench.ablation import main


@pytest.fixture
def finished_run(chain, tmp_path):
    """OUT/a-s0 as `hybridmi train --out` leaves it: dataset, model (with its artifact record), probe, reconstruction."""
    cfg, art, _, _ = chain
    run = tmp_path / "out" / "a-s0"
    shutil.copytree(art["dataset"], run / "dataset")
    shutil.copytree(art["model"], run / "model")
    (run / "model" / "artifact.json").write_text(json.dumps({"seconds": 12.0}))
    (run / "model" / "metrics.json").write_text(json.dumps({"steps": 30.0}))
    for name, metrics in (("probe", {"linear_acc_y": 0.5}), ("reconstruction", {"mse": 2.5})):
        (run / name).mkdir()
        (run / name / "metrics.json").write_text(json.dumps(metrics))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return config, run


def test_recon_fid__the_fid_stage_value_at_the_same_n_measured_once(finished_run, fid_run, capsys):
    config, run = finished_run
    fid_metrics, _ = fid_run  # the fid stage on the same model: its reconstruction FID is of 5 test images
    argv = ["--config", str(config), "--steps", "5", "--out", str(run.parent), "--seeds", "0", "--variant", "a="]
    main([*argv, "--table-only", "--recon-fid", "5"])
    kept = json.loads((run / "recon_fid_5.json").read_text())
    assert kept["num"] == 5 and kept["recon_fid"] == pytest.approx(fid_metrics["recon_fid"], rel=1e-9)
    row = capsys.readouterr().out.splitlines()[2]
    assert row.startswith("| a | 1 | 50.00 |") and f"| 30 | 12 | {kept['recon_fid']:.1f} |" in row
    (run / "recon_fid_5.json").write_text(json.dumps({**kept, "recon_fid": 123.4}))  # kept: read, not measured again
    main([*argv, "--table-only", "--recon-fid", "5"])
    assert capsys.readouterr().out.splitlines()[2].endswith("| 123.4 |")


def test_recon_fid__one_image_is_refused_before_anything(tmp_path):
    argv = ["--config", "configs/smoke.yaml", "--steps", "5", "--out", str(tmp_path / "out"), "--variant", "a="]
    with pytest.raises(SystemExit, match="--recon-fid needs N ≥ 2"):
        main([*argv, "--recon-fid", "1"])
    assert not (tmp_path / "out").exists()
