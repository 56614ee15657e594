"""The smoke pipeline end to end under kfp.local's SubprocessRunner, with object storage on a loopback S3.

One full run (module fixture) feeds the tests: every stage's artifacts, the KFP metrics, the training curves
and the headline metrics, the data set and checkpoints in S3, the data set reused by a second run, a one-stage rerun reproducing the probe,
and a failing stage stopping the run with its own message.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybridmi.config import load_config
from hybridmi.eval.report import CURVES, HEADLINE_METRICS
from hybridmi.runners.compare import compare_runs
from hybridmi.runners.inprocess import StageFailed
from hybridmi.runners.local import run_local
from hybridmi.stages import STAGE_NAMES, stage_module
from hybridmi.stages.common import read_sidecar
from hybridmi.store import CheckpointSync, dataset_key, store_from_env
from hybridmi.train.history import HISTORY_FILE, read_history

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, s3_store_uri, tiny):
    return run_local(
        SMOKE, tiny, runner="subprocess", pipeline_root=tmp_path_factory.mktemp("runs"), store_uri=s3_store_uri
    )


def _metrics(directory: Path) -> dict[str, float]:
    return json.loads((directory / "metrics.json").read_text())


def test_smoke_pipeline__every_stage_leaves_a_finished_artifact(smoke_run):
    for stage in STAGE_NAMES:
        for output in stage_module(stage).OUTPUTS:
            sidecar = read_sidecar(smoke_run.artifact(stage, output))
            assert sidecar["stage"] == stage
    summary = smoke_run.artifact("report", "summary").read_text()
    assert summary == (smoke_run.artifact("report", "report") / "report.md").read_text()
    assert "data:image/png;base64," in smoke_run.artifact("figures", "gallery").read_text()


def test_smoke_pipeline__metrics_reach_kfp_as_metrics_and_a_confusion_matrix(smoke_run):
    probe_dir = smoke_run.artifact("probe", "metrics")
    logged = smoke_run.metadata["probe"]["metrics"]
    assert logged == pytest.approx(_metrics(probe_dir))
    matrix = smoke_run.metadata["probe"]["confusion"]["confusionMatrix"]
    counts = [row["row"] for row in matrix["rows"]]
    num_test = _metrics(smoke_run.artifact("prepare", "dataset"))["num_test"]
    assert len(matrix["annotationSpecs"]) == len(counts) == 4 and sum(map(sum, counts)) == num_test
    correct = sum(counts[i][i] for i in range(len(counts)))
    assert correct / num_test == pytest.approx(_metrics(probe_dir)["linear_acc"])
    assert smoke_run.metadata["train"]["metrics"]["steps"] == _metrics(smoke_run.artifact("train", "model"))["steps"]


def test_smoke_pipeline__training_curves_reach_the_report_and_headline_metrics_line_runs_up(smoke_run):
    for stage, output, steps in (("train", "model", "steps"), ("ddim", "ddim", "ddim_steps")):
        rows = read_history(smoke_run.artifact(stage, output) / HISTORY_FILE)["rows"]
        assert rows[-1]["step"] == _metrics(smoke_run.artifact(stage, output))[steps]
    figures = smoke_run.artifact("figures", "figures")
    assert sorted(p.name for p in figures.glob("curve_*.png")) == sorted(name for name, *_ in CURVES)  # α = 0.5
    report = smoke_run.artifact("report", "report")
    assert "<h2>Training curves</h2>" in (report / "report.html").read_text()
    logged = smoke_run.metadata["report"]["metrics"]  # the KFP Metrics scalars of the report task
    assert logged == pytest.approx(_metrics(report)) and list(logged) == [n for n in HEADLINE_METRICS if n in logged]
    assert {"linear_acc_z", "mse", "fid", "recon_fid"} <= set(logged)
    table = compare_runs([smoke_run.run_dir]).splitlines()  # `hybridmi runs compare` on a kfp.local run directory
    assert table[0] == f"| metric | {smoke_run.run_dir.name} |" and len(table) == 2 + len(logged)
    assert f"| fid | {logged['fid']:.6g} |" in table


def test_smoke_pipeline__dataset_and_checkpoints_are_in_object_storage(smoke_run, s3_store_uri):
    dataset = smoke_run.artifact("prepare", "dataset")
    checksum = read_sidecar(dataset)["dataset_checksum"]
    assert smoke_run.metadata["prepare"]["dataset"] == {
        "store_key": dataset_key(checksum),
        "store_reused": False,
        "decode_skipped": False,
        "dataset_checksum": checksum,
    }
    store = store_from_env(s3_store_uri)
    assert store.exists(dataset_key(checksum))
    assert smoke_run.run_id.startswith("local-")
    for stage, output in (("train", "model"), ("ddim", "ddim")):
        branch = load_config(smoke_run.artifact(stage, output) / "config.yaml").training_hash()
        steps = _metrics(smoke_run.artifact(stage, output))["steps" if stage == "train" else "ddim_steps"]
        assert CheckpointSync(store, f"checkpoints/{smoke_run.run_id}/{branch}/{stage}").latest_step() == steps


def test_second_run__fetches_the_published_dataset_instead_of_decoding(smoke_run, s3_store_uri, tiny, tmp_path):
    again = run_local(SMOKE, tiny, runner="subprocess", pipeline_root=tmp_path, store_uri=s3_store_uri, only="prepare")
    first = smoke_run.metadata["prepare"]["dataset"]
    assert again.metadata["prepare"]["dataset"] == {**first, "store_reused": True, "decode_skipped": True}


def test_second_run__has_its_own_run_id_and_resume_from_picks_the_first_runs_checkpoint(
    smoke_run, s3_store_uri, tiny, tmp_path
):
    inputs = {"dataset": smoke_run.artifact("prepare", "dataset")}
    again = run_local(
        SMOKE,
        tiny,
        runner="subprocess",
        pipeline_root=tmp_path,
        store_uri=s3_store_uri,
        only="train",
        inputs=inputs,
        parameters={"resume_from": smoke_run.run_id},
    )
    assert again.run_id != smoke_run.run_id
    first, resumed = _metrics(smoke_run.artifact("train", "model")), _metrics(again.artifact("train", "model"))
    assert resumed["steps"] == first["steps"]  # continued at the first run's last step,
    assert resumed["loss"] == first["loss"]  # and reports the loss saved with that checkpoint


def test_rerun_one_stage__reproduces_the_probe_from_the_runs_artifacts(smoke_run, tiny, tmp_path):
    rerun = run_local(
        SMOKE,
        tiny,
        runner="subprocess",
        pipeline_root=tmp_path,
        only="probe",
        inputs={"dataset": smoke_run.artifact("prepare", "dataset"), "model": smoke_run.artifact("train", "model")},
    )
    assert sorted(rerun.outputs) == ["probe"]  # importers leave no task directory
    assert _metrics(rerun.artifact("probe", "metrics")) == _metrics(smoke_run.artifact("probe", "metrics"))


def test_failing_stage__stops_the_run_with_its_own_error_message(tiny, tmp_path):
    missing = tmp_path / "no-such-images"
    with pytest.raises(StageFailed) as failed:
        run_local(
            SMOKE,
            [*tiny, "data.source=folder", f"data.root={missing}"],
            runner="subprocess",
            pipeline_root=tmp_path / "runs",
        )
    assert failed.value.stage == "prepare"
    assert str(missing) in failed.value.error
    assert not (failed.value.run_dir / "train").exists()


def test_rerun_with_wrong_inputs__is_refused_before_running(tiny, tmp_path):
    with pytest.raises(ValueError, match="stage probe needs inputs dataset, model; got dataset"):
        run_local(SMOKE, tiny, pipeline_root=tmp_path, only="probe", inputs={"dataset": tmp_path})
