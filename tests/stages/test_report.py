"""The report stage: one self-contained HTML page and its Markdown, from the evaluation artifacts of a tiny run."""

import base64
import io
import json
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image, ImageColor

from hybridmi.eval.render import PALETTE
from hybridmi.eval.report import CURVES, FIGURES
from hybridmi.paper import TABLE1
from hybridmi.stages import run_stage
from hybridmi.stages.common import read_sidecar
from hybridmi.train.history import HISTORY_FILE, write_history


class Page(HTMLParser):
    """The parts of a page the tests look at: table rows (cell texts) by table id, image sources, links."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: dict[str, str] = {}  # figure id -> img src
        self.external: list[str] = []  # src/href values that load something from outside the page
        self._table = self._figure = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if key in a and not a[key].startswith("data:"):
                self.external.append(a[key])
        if tag == "table":
            self._table = a.get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "figure":
            self._figure = a.get("id")
        elif tag == "img" and self._figure:
            self.images[self._figure] = a["src"]

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


HYBRID_ROWS = [
    {
        "step": s,
        "epoch": s / 4,
        "loss": 9.0 / s,
        "recon": 12.0 / s,
        "infonce": 6.0 / s,
        "lr": 0.1,
        "images_per_s": 300.0,
    }
    for s in (2, 4, 6, 8)
]


@pytest.fixture(scope="module")
def report_run(chain, fid_run, tmp_path_factory):
    cfg, art, _, _ = chain
    _, fid_dir = fid_run
    root = tmp_path_factory.mktemp("report")
    evaluation = {"dataset": art["dataset"], "model": art["model"]}
    inputs = {"fid": fid_dir}
    for stage in ("probe", "reconstruction"):
        run_stage(stage, cfg, evaluation, {"metrics": root / stage})
        inputs[stage] = root / stage
    model = root / "model"  # the chain's untrained model with a history of known rows (α = 0.5: both terms)
    shutil.copytree(art["model"], model)
    write_history(model / HISTORY_FILE, HYBRID_ROWS, kind="hybrid")
    drawing = {"dataset": art["dataset"], "model": model, "samples": art["samples"], "ddim": art["ddim"]}
    run_stage("figures", cfg, drawing, {"figures": root / "figures"})
    inputs["figures"] = root / "figures"
    metrics = run_stage("report", cfg, inputs, {"report": root / "out"})
    return cfg, inputs, metrics, root / "out"


def _metrics(directory):
    return json.loads((directory / "metrics.json").read_text())


def test_report__html_table_holds_this_run_beside_the_papers_rows(report_run):
    _, inputs, _, out = report_run
    page = Page((out / "report.html").read_text())
    header, ours, *paper = page.tables["results"]
    assert header[0] == "method" and "FID samples N" in header and "PSNR (dB)" in header
    probe, recon, fid = (_metrics(inputs[k]) for k in ("probe", "reconstruction", "fid"))
    row = dict(zip(header, ours))
    assert row["method"] == "this run"
    assert row["MSE (Σ over 3072 values)"] == f"{recon['mse']:.3f}" and row["PSNR (dB)"] == f"{recon['psnr']:.1f}"
    assert row["FID"] == f"{fid['fid']:.1f}" and row["FID samples N"] == "5"
    for feature in ("z", "y", "ŷ"):
        key = "linear_acc_" + {"ŷ": "yhat"}.get(feature, feature)
        column = "linear acc. z (%)" if feature == "z" else f"{feature} (%)"
        assert row[column] == f"{100 * probe[key]:.1f}"
    assert row["kNN z (%)"] == f"{100 * probe['knn_acc_z']:.1f}"
    assert [r[0] for r in paper] == [f"{method} (paper)" for method in TABLE1]
    hybrid = dict(zip(header, paper[0]))
    assert (
        hybrid["MSE (Σ over 3072 values)"] == "2.6"
        and hybrid["FID"] == "34.6"
        and hybrid["linear acc. z (%)"] == "77.6"
    )


def test_report__figures_are_inline_copies_of_the_figure_files_and_nothing_is_external(report_run):
    _, inputs, _, out = report_run
    page = Page((out / "report.html").read_text())
    assert page.external == []
    names = [name for name, _ in FIGURES] + [name for name, *_ in CURVES]
    assert sorted(page.images) == sorted(name.removesuffix(".png") for name in names)
    for name, _ in FIGURES:
        src = page.images[name.removesuffix(".png")]
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == (inputs["figures"] / name).read_bytes()


def test_report__shows_both_trainers_curves_drawn_from_their_histories(report_run):
    _, inputs, _, out = report_run
    text = (out / "report.html").read_text()
    page = Page(text)
    assert text.index("<h2>Figures</h2>") < text.index("<h2>Training curves</h2>")
    line = ImageColor.getrgb(PALETTE[0])  # the colour of a plot's first series
    for name, *_ in CURVES:
        png = base64.b64decode(page.images[name.removesuffix(".png")].split(",", 1)[1])
        assert png == (inputs["figures"] / name).read_bytes()
        with Image.open(io.BytesIO(png)) as image:
            assert image.size == (560, 320)
            drawn = (np.asarray(image.convert("RGB")) == line).all(axis=-1).sum()
        assert drawn > 100, f"{name}: no line drawn"
    assert "training curves" in (out / "report.md").read_text()


def test_report__states_fid_protocol_checksum_timings_and_config(report_run):
    cfg, inputs, _, out = report_run
    text = (out / "report.html").read_text()
    assert "N = 5 samples" in text and "test split" in text and "all 10 images" in text
    assert "WITHOUT a conversion record" in text  # the tests' random weights are not the registry's
    dataset_checksum = read_sidecar(inputs["fid"])["upstream"]["dataset"]["dataset_checksum"]
    assert dataset_checksum in text and cfg.hash() in text
    timings = Page(text).tables["timings"]
    stages = [row[0] for row in timings[1:]]
    assert stages == [
        "prepare",
        "probe",
        "reconstruction",
        "latents",
        "ddim",
        "sample",
        "fid",
        "figures",
    ]  # pipeline order
    assert "contrastive_channels: 3" in text  # the resolved config, inline


def test_report__markdown_has_the_same_table_and_metrics_hold_the_headline(report_run):
    _, inputs, metrics, out = report_run
    markdown = (out / "report.md").read_text()
    assert "| this run |" in markdown and "| Hybrid (paper) | 2.6 |" in markdown and "N = 5 samples" in markdown
    fid = _metrics(inputs["fid"])
    assert metrics["fid"] == fid["fid"] and metrics["fid_num_samples"] == 5.0
    assert metrics["linear_acc_z"] == _metrics(inputs["probe"])["linear_acc_z"]
    assert _metrics(out) == metrics and read_sidecar(out)["stage"] == "report"


def test_report__a_missing_input_is_one_error_naming_it(report_run, tmp_path):
    cfg, inputs, _, _ = report_run
    (tmp_path / "probe").mkdir()
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'probe' / 'metrics.json'} is missing"):
        run_stage("report", cfg, {**inputs, "probe": tmp_path / "probe"}, {"report": tmp_path / "out"})
