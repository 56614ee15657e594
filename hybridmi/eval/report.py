"""The run report (Table-1-style table, figures, training curves, FID protocol, config, timings) as HTML and as
Markdown; the stable names of its headline metrics."""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from hybridmi.eval.reconstruction import psnr_from_mse
from hybridmi.paper import TABLE1

# The figures stage's files, in page order, with what each shows.
FIGURES = (
    ("reconstructions.png", "Reconstructions: each test image (left) beside its reconstruction x̂ = g(f(x)) (right)."),
    ("samples.png", "DDIM samples: latents z drawn by the latent DDIM, decoded."),
    ("interp_z.png", "Interpolating all of z between two test images (rows: pairs; columns: weight 0 → 1)."),
    ("interp_y.png", "Interpolating only y, the contrastive channels (ŷ fixed)."),
    ("interp_yhat.png", "Interpolating only ŷ (y fixed)."),
)
# The training curves the figures stage draws from the trainers' histories (history.json), in page order:
# (file, trainer, history column, y-axis label in ASCII (Pillow's font), caption).
CURVES = (
    ("curve_loss.png", "hybrid", "loss", "total loss", "Hybrid training: total loss α·recon + (1 − α)·InfoNCE."),
    ("curve_infonce.png", "hybrid", "infonce", "InfoNCE", "InfoNCE of the queries y against their keys and the queue."),
    (
        "curve_recon.png",
        "hybrid",
        "recon",
        "reconstruction (sum over 3072 values)",
        "Reconstruction loss: Σ over the 3072 values of (x̂ − x)², mean over the batch.",
    ),
    ("curve_lr.png", "hybrid", "lr", "learning rate", "Learning rate of the hybrid trainer."),
    ("curve_throughput.png", "hybrid", "images_per_s", "images / s", "Hybrid training throughput (images per second)."),
    ("curve_ddim_loss.png", "ddim", "loss", "eps-prediction loss", "Latent DDIM training: ε-prediction loss."),
)
# The run's headline numbers under stable names: the report task's KFP Metrics scalars (also logged by the probe,
# reconstruction and fid tasks), the report's metrics.json and the rows of `hybridmi runs compare`.
HEADLINE_METRICS = {
    "linear_acc": "linear-probe test accuracy of the headline feature, z (fraction in [0, 1])",
    "linear_acc_z": "linear-probe test accuracy on z = [y, ŷ] (fraction)",
    "linear_acc_y": "linear-probe test accuracy on y, the contrastive channels (fraction)",
    "linear_acc_yhat": "linear-probe test accuracy on ŷ (fraction)",
    "knn_acc_z": "kNN test accuracy on z (fraction)",
    "knn_acc_y": "kNN test accuracy on y (fraction)",
    "knn_acc_yhat": "kNN test accuracy on ŷ (fraction)",
    "mse": "test reconstruction error: Σ over the 3072 values of (x̂ − x)², mean over images",
    "psnr": "PSNR of the test reconstructions (dB)",
    "fid": "FID of the DDIM samples against the reference split",
    "fid_num_samples": "samples N behind fid",
    "fid_reference_count": "reference images behind fid",
    "recon_fid": "FID of decoded test images against the same reference (the decoder's ceiling)",
}
CURVE_NOTE = "Each point is the mean over one report window (train.log_every / ddim.log_every steps), against step."
FIGURE_SCALE = 2  # CSS pixels per image pixel (nearest-neighbour), so 32x32 images are legible
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
HEADER = ("method", "MSE (Σ over 3072 values)", "PSNR (dB)", "FID", "reconstruction FID", "FID samples N")
HEADER += ("linear acc. z (%)", "y (%)", "ŷ (%)", "kNN z (%)")
MSE_NOTE = (
    "MSE: per image, the sum over the 3072 values in [0, 1] of the squared error, averaged over the test "
    "split (the paper's unit); PSNR = 10·log10(3072 / MSE)."
)


def png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


@dataclass(frozen=True)
class Report:
    """Everything the page shows. Metrics dicts are the stages' metrics.json; figures: file name → PNG bytes."""

    title: str
    data: str  # e.g. "CIFAR-10 (JPEG copy)"
    paper_dataset: str | None  # "cifar10" | "cifar100": the Table 1 columns compared with
    comparable: bool  # whether the data is the paper's (else paper rows are for reference only)
    probe: dict[str, float]
    reconstruction: dict[str, float]
    fid: dict[str, float]
    fid_protocol: dict[str, Any] | None
    figures: dict[str, bytes]
    figure_metrics: dict[str, float]
    timings: list[tuple[str, float]]  # (stage, seconds) in pipeline order
    facts: list[tuple[str, str]]  # (label, value): α, epochs, config hash, data checksum, code version, ...
    config_yaml: str
    notes: list[str] = field(default_factory=list)
    curves: dict[str, bytes] = field(default_factory=dict)  # CURVES file name -> PNG bytes (drawn at their size)


def _num(value: float | None, fmt: str = ".1f") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def result_rows(report: Report) -> list[tuple[list[str], bool]]:
    """(cells under HEADER, is a paper row): this run, then Table 1's rows for ``report.paper_dataset`` (if any)."""
    p, r, f = report.probe, report.reconstruction, report.fid

    def pct(*keys: str) -> str:
        value = next((p[k] for k in keys if k in p), None)
        return _num(None if value is None else 100.0 * value)

    samples = int(f["fid_num_samples"]) if "fid_num_samples" in f else None
    ours = ["this run", _num(r.get("mse"), ".3f"), _num(r.get("psnr")), _num(f.get("fid")), _num(f.get("recon_fid"))]
    ours.append(_num(samples, ",d"))
    ours += [pct("linear_acc_z", "linear_acc"), pct("linear_acc_y"), pct("linear_acc_yhat"), pct("knn_acc_z")]
    rows = [(ours, False)]
    for method, columns in TABLE1.items() if report.paper_dataset is not None else ():
        v = columns[report.paper_dataset]
        psnr = "–" if v["mse"] is None else "≈" + _num(psnr_from_mse(v["mse"]))
        cells = [f"{method} (paper)", _num(v["mse"], ".3g"), psnr, _num(v["fid"]), "–", "–", _num(v["acc"])]
        rows.append((cells + ["–"] * 3, True))
    return rows


def fid_sentence(report: Report) -> str:
    """FID with its N, reference and weights, in words (the numbers that must stand beside every FID)."""
    if "fid" not in report.fid:
        return "FID: not measured."
    p = report.fid_protocol or {}
    n = int(report.fid.get("fid_num_samples", 0))
    ref = int(report.fid.get("fid_reference_count", p.get("reference_count", 0)))
    subset = (
        f"a random {ref:,} of its {p['reference_split_size']:,} images (seed {p['reference_subset_seed']})"
        if p.get("reference_subset_seed") is not None
        else f"all {ref:,} images"
    )
    record = p.get("weights_record")
    weights = (
        f"weights converted from {record.get('source_requirement', '?')} (sha256 {p['weights_sha256'][:12]}…)"
        if record
        else f"weights sha256 {str(p.get('weights_sha256', '?'))[:12]}… WITHOUT a conversion record "
        "(not the registry file: FID is a code-path check, not a result)"
    )
    sampling = p.get("sampling", {})
    steps = f", {sampling['steps']} DDIM steps, η = {sampling['eta']}" if sampling else ""
    return (
        f"FID {report.fid['fid']:.2f} from N = {n:,} samples (float32 sampling, uint8 as saved{steps}) against "
        f"the {p.get('reference_split', '?')} split's statistics over {subset}; {weights}. Fewer samples than the "
        "paper's usual 50,000 inflate FID, so compare FIDs only at equal N."
        + (
            f" Reconstruction FID {report.fid['recon_fid']:.2f}: as many test images, encoded and decoded, against the "
            "same statistics; the ceiling the decoder sets for any generator on this latent."
            if "recon_fid" in report.fid
            else ""
        )
    )


def _notes(report: Report) -> list[str]:
    """The paragraphs under the table: the FID protocol first, then the paper rows' caveat, units, run notes."""
    notes = [fid_sentence(report)]
    if report.paper_dataset is not None:
        name = DATASET_NAMES.get(report.paper_dataset, report.paper_dataset)
        notes.append(
            f"Paper rows: Table 1 on official {name} after full GPU training; the paper reports one linear accuracy "
            "per method (shown under z); their PSNR is computed from their MSE."
            + ("" if report.comparable else f" This run is on {report.data}: the paper's rows are for reference only.")
        )
    return [*notes, MSE_NOTE, *report.notes]


def render_markdown(report: Report) -> str:
    """The report as Markdown: facts, the table, the FID protocol, timings and notes (no figures)."""

    def row(cells) -> str:
        return "| " + " | ".join(cells) + " |"

    lines = [f"# {report.title}", "", f"Data: {report.data}. " + "; ".join(f"{k} {v}" for k, v in report.facts) + "."]
    lines += ["", row(HEADER), "|" + "---|" * len(HEADER), *(row(cells) for cells, _ in result_rows(report))]
    for note in _notes(report):
        lines += ["", note]
    if report.timings:
        lines += ["", "| stage | seconds |", "|---|---|", *(f"| {s} | {t:.1f} |" for s, t in report.timings)]
    lines += [
        "",
        "Figures (reconstructions, DDIM samples, interpolations of z, y and ŷ, training curves) are in report.html.",
    ]
    return "\n".join(lines) + "\n"


STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#111;max-width:1200px}
h1{font-size:24px;margin:0 0 8px} h2{font-size:18px;margin:28px 0 8px}
table{border-collapse:collapse;margin:8px 0} th,td{border:1px solid #888;padding:4px 10px;text-align:right}
th{background:#dce6f5} td:first-child,th:first-child{text-align:left}
tr.ours td{background:#fff3c4;font-weight:600} tr.paper td{color:#333}
figure{display:inline-block;margin:8px 16px 8px 0;vertical-align:top}
figure img{image-rendering:pixelated;border:1px solid #ccc}
figcaption{font-size:13px;max-width:560px} p.note{font-size:13px;color:#333;max-width:900px}
pre{background:#f4f4f4;padding:8px;font-size:12px;overflow:auto}
"""


def _figure(name: str, caption: str, data: bytes, *, scale: int = FIGURE_SCALE) -> str:
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    return (
        f"<figure id='{html.escape(name.removesuffix('.png'))}'><img alt='{html.escape(name)}' "
        f"src='{png_data_uri(data)}' width='{scale * width}' height='{scale * height}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _table(table_id: str, header: tuple[str, ...], rows: list[tuple[list[str], str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = [f"<tr class='{c}'>" + "".join(f"<td>{html.escape(v)}</td>" for v in cells) + "</tr>" for cells, c in rows]
    return f"<table id='{table_id}'><thead><tr>{head}</tr></thead><tbody>" + "".join(body) + "</tbody></table>"


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page (figures as data URIs, CSS inline, no scripts)."""
    e = html.escape
    results = [(cells, "paper" if paper else "ours") for cells, paper in result_rows(report)]
    fid_note, *notes = _notes(report)
    facts = "; ".join(f"{e(k)} <code>{e(v)}</code>" for k, v in report.facts)
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(report.title)}</title>"
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{e(report.title)}</h1>",
        f"<p>Data: <b>{e(report.data)}</b>. {facts}.</p>",
        "<h2>Results</h2>" + _table("results", HEADER, results),
        f"<p class='note' id='fid-protocol'>{e(fid_note)}</p>",
        *(f"<p class='note'>{e(n)}</p>" for n in notes),
        "<h2>Figures</h2>",
    ]
    for name, caption in FIGURES:
        if name in report.figures:
            change = report.figure_metrics.get(f"{name.removesuffix('.png')}_pixel_change")
            text = caption if change is None else f"{caption} Mean pixel change across a row: {change:.3f}."
            parts.append(_figure(name, text, report.figures[name]))
    curves = [
        _figure(name, caption, report.curves[name], scale=1) for name, *_, caption in CURVES if name in report.curves
    ]
    if curves:
        parts += ["<h2>Training curves</h2>", f"<p class='note'>{e(CURVE_NOTE)}</p>", *curves]
    if report.timings:
        timings = [([stage, f"{seconds:.1f}"], "") for stage, seconds in report.timings]
        parts.append("<h2>Timings</h2>" + _table("timings", ("stage", "seconds"), timings))
    config = f"<details><summary>resolved config</summary><pre>{e(report.config_yaml)}</pre></details>"
    return "\n".join([*parts, f"<h2>Configuration</h2>{config}", "</body></html>"]) + "\n"
