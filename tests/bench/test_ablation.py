"""bench/ablation.py: variants parsed, bad overrides refused before any run, mean ± half-range per variant."""

import json

import pytest

from bench.ablation import main, parse_variant, table


def test_parse_variant__name_and_overrides_or_the_preset_alone():
    assert parse_variant("moco=objective.alpha=0,objective.temperature=0.2") == (
        "moco",
        ["objective.alpha=0", "objective.temperature=0.2"],
    )
    assert parse_variant("preset=") == ("preset", [])
    with pytest.raises(SystemExit, match="bad variant"):
        parse_variant("=objective.alpha=0")


def test_main__a_bad_override_is_refused_before_any_run(tmp_path):
    argv = ["--config", "configs/smoke.yaml", "--steps", "5", "--out", str(tmp_path / "out")]
    with pytest.raises(Exception, match="alpha"):
        main([*argv, "--variant", "ok=objective.alpha=0", "--variant", "bad=objective.alpha=7"])
    assert not (tmp_path / "out").exists()


def test_table__mean_and_half_range_over_seeds_in_percent():
    rows = [
        {"variant": "a", "seed": 0, "linear_acc_y": 0.40, "mse": 2.0},
        {"variant": "a", "seed": 1, "linear_acc_y": 0.44, "mse": 3.0},
        {"variant": "b", "seed": 0, "linear_acc_y": 0.5},
    ]
    lines = table(rows, ["a", "b"]).splitlines()
    assert lines[2].startswith("| a | 2 | 42.00 ± 2.00 |") and "| 2.50 ± 0.50 |" in lines[2]
    assert lines[3].startswith("| b | 1 | 50.00 | – |")


def test_table_only__tabulates_finished_runs_and_starts_none(tmp_path, capsys):
    run = tmp_path / "a-s0"
    for name, metrics in (("probe", {"linear_acc_y": 0.5}), ("reconstruction", {"mse": 2.5}), ("model", {})):
        (run / name).mkdir(parents=True)
        (run / name / ("artifact.json" if name == "model" else "metrics.json")).write_text(json.dumps(metrics))
    argv = ["--config", "configs/smoke.yaml", "--steps", "5", "--out", str(tmp_path), "--seeds", "0", "1"]
    main([*argv, "--variant", "a=", "--variant", "b=objective.alpha=0", "--table-only"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("| a | 1 | 50.00 |") and "| 2.50 |" in lines[2] and lines[3].startswith("| b | 0 |")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-s0", "config.yaml", "results.jsonl"]
