"""``hybridmi runs compare``: the headline metrics of local runs side by side, missing values as a dash."""

import pytest

from hybridmi.cli import main
from hybridmi.config import Config
from hybridmi.eval.report import HEADLINE_METRICS
from hybridmi.stages.common import finish_output

PROBE = {"linear_acc": 0.5, "linear_acc_z": 0.5, "linear_acc_y": 0.4, "knn_acc_z": 0.3, "probe_weight_decay_z": 0.0}
RECONSTRUCTION = {"mse": 14.8823, "psnr": 23.1, "num_images": 16.0}
FID = {"fid": 323.25, "fid_num_samples": 100.0, "fid_reference_count": 100.0}


def _output(directory, stage, metrics):
    directory.mkdir(parents=True)
    finish_output(directory, Config(), stage=stage, metrics=metrics)


@pytest.fixture
def runs(tmp_path):
    """A finished run (the layout of `hybridmi run --runner inprocess`: RUN/<task>/<output>) and one that stopped
    before its fid and report tasks."""
    done, stopped = tmp_path / "root" / "hybridmi-done", tmp_path / "root" / "hybridmi-stopped"
    _output(done / "probe" / "metrics", "probe", PROBE)
    _output(done / "reconstruction" / "metrics", "reconstruction", RECONSTRUCTION)
    _output(done / "fid" / "metrics", "fid", FID)
    headline = {k: v for k, v in {**PROBE, **RECONSTRUCTION, **FID}.items() if k in HEADLINE_METRICS}
    _output(done / "report" / "report", "report", headline)
    _output(stopped / "train" / "model", "train", {"loss": 1.0})
    _output(stopped / "probe" / "metrics", "probe", {**PROBE, "linear_acc_y": 0.25})
    _output(stopped / "reconstruction" / "metrics", "reconstruction", {**RECONSTRUCTION, "mse": 3.5})
    return done, stopped


def test_runs_compare__prints_one_column_per_run_and_a_row_per_headline_metric(runs, capsys):
    done, stopped = runs
    assert main(["runs", "compare", str(done), str(stopped)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["| metric | hybridmi-done | hybridmi-stopped |", "|---|---|---|"]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    rows = {name: values for name, *values in cells}
    assert rows["linear_acc_y"] == ["0.4", "0.25"] and rows["mse"] == ["14.8823", "3.5"]
    assert rows["fid"] == ["323.25", "–"] and rows["fid_num_samples"] == ["100", "–"]
    assert list(rows) == [name for name in HEADLINE_METRICS if name in rows]  # the documented order
    assert "linear_acc_yhat" not in rows and "probe_weight_decay_z" not in rows and "loss" not in rows


@pytest.mark.parametrize("bad", ["missing", "empty", "file", "root"])
def test_runs_compare__what_is_not_one_run_directory_is_one_line(runs, tmp_path, capsys, bad):
    done, _ = runs
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    path = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "file": tmp_path / "file"}.get(bad)
    path = path or done.parent  # the root of both runs: two probe outputs
    assert main(["runs", "compare", str(done), str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"hybridmi: error: {path} ") and err.count("\n") == 1
    assert ("holds 2 probe outputs" in err) == (bad == "root")
