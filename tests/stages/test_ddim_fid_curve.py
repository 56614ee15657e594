"""bench/ddim_fid_curve.py: FID points along one DDIM run, which stopping and resuming leaves unchanged."""

import json

import torch
import yaml

from bench.ddim_fid_curve import main
from hybridmi.train.ddim import load_ddim
from hybridmi.train.history import read_history


def test_curve__points_along_one_ddim_run_the_same_as_an_uninterrupted_one(chain, random_weights, tmp_path, capsys):
    cfg, art, _, _ = chain
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    argv = ["--config", str(config), "--run", str(art["dataset"].parent), "--every", "0.5", "--num", "4"]
    main([*argv, "--curve", str(tmp_path / "curve")])
    rows = [json.loads(line) for line in (tmp_path / "curve" / "curve.jsonl").read_text().splitlines()]
    assert [r["epochs"] for r in rows] == ["recon", 0.5, 1.0]
    steps = cfg.ddim.epochs * (len(torch.load(art["latents"] / "train.pt", weights_only=True)["latents"]) // 8)
    assert [r["step"] for r in rows[1:]] == [steps // 2, steps]
    assert all(r["num"] == 4 and r["sampler"]["steps"] == cfg.sampling.steps for r in rows[1:])
    stopped, straight = load_ddim(tmp_path / "curve" / "ddim"), load_ddim(art["ddim"])  # the chain's: not stopped
    assert stopped.step == straight.step
    for (name, a), b in zip(stopped.unet.state_dict().items(), straight.unet.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    history = read_history(tmp_path / "curve" / "ddim" / "history.json")  # the whole run's, across the stops
    straight_rows = read_history(art["ddim"] / "history.json")["rows"]
    assert history["kind"] == "ddim" and history["rows"]
    assert [r["step"] for r in history["rows"]] == [r["step"] for r in straight_rows]
    assert "reconstruction FID (N = 4)" in capsys.readouterr().out
    main([*argv, "--curve", str(tmp_path / "curve")])  # measured points are not measured again
    assert len((tmp_path / "curve" / "curve.jsonl").read_text().splitlines()) == 3
