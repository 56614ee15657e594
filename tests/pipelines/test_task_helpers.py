"""The task-side helpers components call: config parameters, KFP metric logging, failure records, the sweep table."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from kfp.dsl import ClassificationMetrics, Metrics
from PIL import Image, ImageColor

from hybridmi.config import Config, ConfigError, config_from_dict, config_from_text, config_to_text
from hybridmi.eval.render import PALETTE, gallery_html
from hybridmi.eval.report import HEADLINE_METRICS
from hybridmi.runtime import write_json
from hybridmi.stages.common import finish_output
from hybridmi.task.component import log_confusion, log_metrics
from hybridmi.task.dag import wiring
from hybridmi.task.failure import ERROR_DIR_VAR
from hybridmi.task.run import float_metrics, run_task, task_config
from hybridmi.task.tradeoff import (
    csv_text,
    markdown_table,
    paper_points,
    sweep_paper_dataset,
    tradeoff_png,
    tradeoff_rows,
    write_tradeoff,
)
from pipelines.parameters import pipeline_arguments


def test_config_text__round_trips_to_an_equal_config():
    cfg = config_from_dict({"name": "x", "train": {"epochs": 2.5}})
    assert config_from_text(config_to_text(cfg)) == cfg
    assert config_from_text("") == Config()


def test_task_config__empty_parameters_keep_the_config_and_values_override_it():
    text = config_to_text(config_from_dict({"train": {"epochs": 3.0}, "sampling": {"steps": 7}}))
    kept = task_config("sample", text, {}, {"ddim_sample_steps": "", "ddim_eta": ""})
    assert (kept.train.epochs, kept.sampling.steps) == (3.0, 7)
    changed = task_config("train", text, {}, {"hybrid_epochs": "0.5", "hybrid_alpha": "0.25"})
    assert (changed.train.epochs, changed.sampling.steps, changed.objective.alpha) == (0.5, 7, 0.25)


def test_task_config__bad_value_names_field_and_parameter():
    with pytest.raises(ConfigError, match=r"objective\.alpha.*hybrid_alpha='1.5'"):
        task_config("train", "", {}, {"hybrid_alpha": "1.5"})
    with pytest.raises(ValueError, match="unknown config parameter.*hybrid_alfa"):
        task_config("train", "", {}, {"hybrid_alfa": "0.5"})


def _artifact(directory, stage, **tree):
    directory.mkdir(parents=True)
    finish_output(directory, config_from_dict(tree), stage=stage)
    return directory


def test_task_config__downstream_stages_run_with_the_values_their_inputs_were_made_with(tmp_path):
    """The α sweep's probe gets the config without hybrid_alpha: it must take α from the model, not the dataset."""
    dataset = _artifact(tmp_path / "dataset", "prepare", objective={"alpha": 0.9})
    model = _artifact(tmp_path / "model", "train", objective={"alpha": 0.3}, train={"epochs": 2.0})
    text = config_to_text(config_from_dict({"objective": {"alpha": 0.5}, "ddim": {"epochs": 4.0}}))
    cfg = task_config("probe", text, {"dataset": dataset, "model": model})
    assert (cfg.objective.alpha, cfg.train.epochs, cfg.ddim.epochs) == (0.3, 2.0, 4.0)
    latents = _artifact(tmp_path / "latents", "latents", objective={"alpha": 0.7})
    with pytest.raises(ValueError, match="inputs of sample were made with different hybrid_alpha"):
        task_config("sample", text, {"latents": latents, "model": model})


def test_report__shows_the_alpha_and_sample_count_the_artifacts_were_made_with(tmp_path):
    made_with = {"objective": {"alpha": 0.3}, "sampling": {"num_samples": 24}, "ddim": {"epochs": 3.0}}
    inputs = {
        name: _artifact(tmp_path / name, name, **made_with) for name in ("probe", "reconstruction", "fid", "figures")
    }
    write_json(inputs["probe"] / "metrics.json", {"linear_acc_z": 0.5})
    write_json(inputs["reconstruction"] / "metrics.json", {"mse": 30.0, "psnr": 20.0})
    write_json(inputs["fid"] / "metrics.json", {"fid": 90.0, "fid_num_samples": 24})
    write_json(inputs["figures"] / "metrics.json", {})
    text = config_to_text(config_from_dict({"objective": {"alpha": 0.5}}))  # the config without the parameters
    run_task("report", text, inputs=inputs, outputs={"report": tmp_path / "report"}, env={})
    report = (tmp_path / "report" / "report.md").read_text()
    assert "α 0.3;" in report and "latent DDIM 3 epochs" in report
    assert config_from_text((tmp_path / "report" / "config.yaml").read_text()).sampling.num_samples == 24


# What KFP's run comparison and `hybridmi runs compare` line runs up by: a rename breaks comparison with older runs.
STABLE_METRIC_NAMES = (
    "linear_acc",
    "linear_acc_z",
    "linear_acc_y",
    "linear_acc_yhat",
    "knn_acc_z",
    "knn_acc_y",
    "knn_acc_yhat",
    "mse",
    "psnr",
    "fid",
    "fid_num_samples",
    "fid_reference_count",
    "recon_fid",
)


def test_report_component__logs_the_headline_numbers_as_kfp_metrics_under_their_stable_names(tmp_path, monkeypatch):
    from kfp.dsl import HTML, Artifact, Markdown

    from components import report

    monkeypatch.delenv("HYBRIDMI_STORE", raising=False)
    inputs = {name: _artifact(tmp_path / name, name) for name in ("probe", "reconstruction", "fid", "figures")}
    write_json(inputs["probe"] / "metrics.json", {"linear_acc_z": 0.5, "probe_weight_decay_z": 0.0})
    write_json(inputs["reconstruction"] / "metrics.json", {"mse": 30.0, "psnr": 20.0, "num_images": 10})
    write_json(inputs["fid"] / "metrics.json", {"fid": 90.0, "fid_num_samples": 24, "recon_fid": 50.0})
    write_json(inputs["figures"] / "metrics.json", {})
    metrics = Metrics(uri=str(tmp_path / "metrics"))
    report.python_func(
        config="",
        **{name: Artifact(uri=str(directory)) for name, directory in inputs.items()},
        report=Artifact(uri=str(tmp_path / "report")),
        page=HTML(uri=str(tmp_path / "page.html")),
        summary=Markdown(uri=str(tmp_path / "summary.md")),
        metrics=metrics,
    )
    headline = {"linear_acc_z": 0.5, "mse": 30.0, "psnr": 20.0, "fid": 90.0, "fid_num_samples": 24.0, "recon_fid": 50.0}
    assert metrics.metadata == headline and json.loads((tmp_path / "metrics").read_text()) == headline
    assert tuple(HEADLINE_METRICS) == STABLE_METRIC_NAMES
    readme = (Path(__file__).resolve().parents[2] / "components" / "README.md").read_text()
    assert [name for name in STABLE_METRIC_NAMES if f"`{name}`" not in readme] == []  # each one documented


def test_pipeline_arguments__carry_the_config_text_and_task_values_only():
    cfg = config_from_dict({"name": "args"})
    args = pipeline_arguments(config_to_text(cfg), gpu_count="")
    assert config_from_text(args["config"]) == cfg and args["gpu_count"] == ""
    with pytest.raises(ValueError, match="unknown pipeline parameter"):
        pipeline_arguments(config_to_text(cfg), gpu_cout="1")
    with pytest.raises(ValueError, match="unknown pipeline parameter.*hybrid_alpha"):
        pipeline_arguments(config_to_text(cfg), hybrid_alpha="0.5")  # config parameters travel inside the config text


def test_float_metrics__rejects_non_numbers_by_name():
    assert float_metrics({"a": 1, "b": 2.5}) == {"a": 1.0, "b": 2.5}
    with pytest.raises(ValueError, match="metric flag=True"):
        float_metrics({"flag": True})


def test_log_metrics__sets_kfp_metadata_and_writes_json_unless_a_directory(tmp_path):
    file_artifact = Metrics(uri=str(tmp_path / "m"))
    log_metrics(file_artifact, {"loss": 0.5}, metadata={"store_reused": True})
    assert file_artifact.metadata == {"loss": 0.5, "store_reused": True}
    assert json.loads((tmp_path / "m").read_text()) == {"loss": 0.5}
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "metrics.json").write_text("{}")
    log_metrics(Metrics(uri=str(tmp_path / "dir")), {"acc": 1.0})
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["metrics.json"]


def test_log_confusion__logs_the_matrix_of_confusion_json(tmp_path):
    write_json(tmp_path / "confusion.json", {"classes": ["a", "b"], "confusion_matrix": [[3, 1], [0, 4]]})
    artifact = ClassificationMetrics(uri=str(tmp_path / "cm"))
    assert log_confusion(artifact, tmp_path)
    matrix = artifact.metadata["confusionMatrix"]
    assert [c["displayName"] for c in matrix["annotationSpecs"]] == ["a", "b"]
    assert [r["row"] for r in matrix["rows"]] == [[3, 1], [0, 4]]
    assert not log_confusion(ClassificationMetrics(uri=str(tmp_path / "x")), tmp_path / "nothing")


def test_run_task__failure_is_recorded_with_the_stages_own_message(tmp_path):
    text = config_to_text(config_from_dict({"data": {"source": "folder", "root": str(tmp_path / "no-such-data")}}))
    env = {ERROR_DIR_VAR: str(tmp_path / "errors")}
    with pytest.raises(Exception) as raised:
        run_task("prepare", text, inputs={}, outputs={"dataset": tmp_path / "dataset"}, env=env)
    record = json.loads((tmp_path / "errors" / "prepare.json").read_text())
    assert record["stage"] == "prepare"
    assert "no-such-data" in record["error"] and str(raised.value) in record["error"]


def test_wiring__report_reads_the_metrics_of_the_evaluation_stages_and_the_figures():
    assert wiring()["report"] == {
        "probe": ("probe", "metrics"),
        "reconstruction": ("reconstruction", "metrics"),
        "fid": ("fid", "metrics"),
        "figures": ("figures", "figures"),
    }
    assert wiring()["train"] == {"dataset": ("prepare", "dataset")}


def _eval_dirs(tmp_path, alpha, acc, mse):
    cfg = config_from_dict({"objective": {"alpha": alpha}})
    probe, recon = tmp_path / f"probe-{alpha}", tmp_path / f"recon-{alpha}"
    for directory in (probe, recon):
        directory.mkdir()
    finish_output(probe, cfg, stage="probe", metrics={"linear_acc_y": acc, "linear_acc_z": acc / 2, "knn_acc_y": 0.1})
    finish_output(recon, cfg, stage="reconstruction", metrics={"mse": mse, "psnr": 20.0})
    return probe, recon


def test_tradeoff_rows__pair_by_config_and_sort_by_alpha_whatever_the_order(tmp_path):
    (p9, r9), (p1, r1) = _eval_dirs(tmp_path, 0.9, 0.3, 2.0), _eval_dirs(tmp_path, 0.1, 0.8, 9.0)
    rows = tradeoff_rows([p9, p1], [r1, r9])
    assert rows == [
        {"alpha": 0.1, "linear_acc_y": 0.8, "linear_acc_z": 0.4, "mse": 9.0, "psnr": 20.0},
        {"alpha": 0.9, "linear_acc_y": 0.3, "linear_acc_z": 0.15, "mse": 2.0, "psnr": 20.0},
    ]
    with pytest.raises(ValueError, match="do not pair up"):
        tradeoff_rows([p9, p1], [r9])


def test_tradeoff_outputs__table_csv_and_plot_hold_every_row(tmp_path):
    rows = [
        {"alpha": 0.1, "linear_acc_y": 0.8, "mse": 9.0, "psnr": 20.0},
        {"alpha": 0.9, "linear_acc_y": 0.3, "mse": 2.0, "psnr": 25.0},
    ]
    table = markdown_table(rows)
    assert table.splitlines()[0] == "| alpha | linear_acc_y (%) | mse | psnr |"
    assert "| 0.1 | 80.0 | 9.000 | 20.000 |" in table
    assert list(csv.DictReader(io.StringIO(csv_text(rows))))[1] == {
        "alpha": "0.9",
        "linear_acc_y": "0.3",
        "mse": "2.0",
        "psnr": "25.0",
    }
    image = Image.open(io.BytesIO(tradeoff_png(rows)))
    assert image.size == (640, 440)
    write_tradeoff(rows, table_path=tmp_path / "t.md", csv_path=tmp_path / "t.csv", html_path=tmp_path / "t.html")
    assert "data:image/png;base64," in (tmp_path / "t.html").read_text()
    with pytest.raises(ValueError, match="no results"):
        write_tradeoff([], table_path=tmp_path / "a", csv_path=tmp_path / "b", html_path=tmp_path / "c")


def test_tradeoff_plot__marks_the_papers_rows_of_the_sweeps_data_set(tmp_path):
    rows = [
        {"alpha": 0.0, "linear_acc_z": 0.8, "mse": 9.0, "psnr": 20.0},
        {"alpha": 1.0, "linear_acc_z": 0.2, "mse": 1.0, "psnr": 30.0},
    ]
    assert paper_points("cifar10") == [(2.6, 77.6, "Hybrid"), (0.25, 18.8, "NVAE"), (2.5, 22.5, "DDIM")]
    marked = ImageColor.getrgb(PALETTE[1])  # the colour after the one series (z): the marks'
    drawn = {}
    for paper in ("cifar10", None):
        with Image.open(io.BytesIO(tradeoff_png(rows, paper=paper))) as image:
            drawn[paper] = (np.asarray(image.convert("RGB")) == marked).all(axis=-1).sum()
    assert drawn["cifar10"] > 3 * 9 * 9 and drawn[None] == 0  # three filled 9x9 squares (and their labels)
    for source in ("cifar10", "synthetic"):
        probe = _artifact(tmp_path / source, "probe", data={"source": source})
        assert sweep_paper_dataset([probe]) == ("cifar10" if source == "cifar10" else None)
    write_tradeoff(
        rows, table_path=tmp_path / "t.md", csv_path=tmp_path / "t.csv", html_path=tmp_path / "t.html", paper="cifar10"
    )
    page = (tmp_path / "t.html").read_text()
    assert "Table 1 on cifar10" in page and "MoCo-v2 78.3 % (no MSE)" in page and "id='frontier'" in page


def test_gallery_html__embeds_every_png(tmp_path):
    for name in ("b.png", "a.png"):
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    page = gallery_html(tmp_path, title="t")
    assert page.count("data:image/png;base64,") == 2 and page.index("a.png") < page.index("b.png")
    with pytest.raises(FileNotFoundError, match="no PNG"):
        gallery_html(tmp_path / "a.png", title="t")


def test_components_readme__shows_the_parameter_table_of_parameters_py():
    from pathlib import Path

    from pipelines.parameters import parameters_markdown

    readme = (Path(__file__).resolve().parents[2] / "components" / "README.md").read_text()
    assert parameters_markdown() in readme
