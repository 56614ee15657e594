"""The run report a person reads: a Table-1-style table, the figures, the FID protocol, config, checksum, timings.

``render_html`` writes ONE self-contained page (figures inline as PNG data URIs, no external file or
script), which the KFP UI shows as an HTML artifact; ``render_markdown`` writes the same text and
tables without the figures (the UI's Markdown viewer). Both take a ``Report``; the report stage
builds it from the artifacts of the evaluation stages.
"""

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
FIGURE_SCALE = 2  # CSS pixels per image pixel (nearest-neighbour), so 32x32 images are legible
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


@dataclass(frozen=True)
class Row:
    """One line of the results table; None where a method reports nothing."""

    method: str
    mse: float | None = None
    psnr: float | None = None
    fid: float | None = None
    fid_samples: int | None = None
    acc_z: float | None = None  # linear accuracy in %, on z (the paper's rows: the one accuracy they report)
    acc_y: float | None = None
    acc_yhat: float | None = None
    knn_z: float | None = None
    paper: bool = False


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


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def result_rows(report: Report) -> list[Row]:
    """This run's row, then the paper's Table 1 rows for ``report.paper_dataset`` (none when it is None)."""
    p, r, f = report.probe, report.reconstruction, report.fid
    rows = [
        Row(
            "this run",
            mse=r.get("mse"),
            psnr=r.get("psnr"),
            fid=f.get("fid"),
            fid_samples=int(f["fid_num_samples"]) if "fid_num_samples" in f else None,
            acc_z=_pct(p.get("linear_acc_z", p.get("linear_acc"))),
            acc_y=_pct(p.get("linear_acc_y")),
            acc_yhat=_pct(p.get("linear_acc_yhat")),
            knn_z=_pct(p.get("knn_acc_z")),
        )
    ]
    if report.paper_dataset is not None:
        for method, columns in TABLE1.items():
            v = columns[report.paper_dataset]
            rows.append(
                Row(
                    f"{method} (paper)",
                    mse=v["mse"],
                    psnr=None if v["mse"] is None else psnr_from_mse(v["mse"]),
                    fid=v["fid"],
                    acc_z=v["acc"],
                    paper=True,
                )
            )
    return rows


HEADER = (
    "method",
    "MSE (Σ over 3072 values)",
    "PSNR (dB)",
    "FID",
    "FID samples N",
    "linear acc. z (%)",
    "y (%)",
    "ŷ (%)",
    "kNN z (%)",
)


def _cells(row: Row) -> list[str]:
    def num(value: float | None, fmt: str) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        return format(value, fmt)

    psnr = num(row.psnr, ".1f")
    return [
        row.method,
        num(row.mse, ".3g" if row.paper else ".3f"),
        ("≈" + psnr) if row.paper and row.psnr else psnr,
        num(row.fid, ".1f"),
        num(row.fid_samples, ",d"),
        num(row.acc_z, ".1f"),
        num(row.acc_y, ".1f"),
        num(row.acc_yhat, ".1f"),
        num(row.knn_z, ".1f"),
    ]


def fid_sentence(report: Report) -> str:
    """FID with its N, reference and weights, in words (the numbers that must stand beside every FID)."""
    if "fid" not in report.fid:
        return "FID: not measured."
    p = report.fid_protocol or {}
    n = int(report.fid.get("fid_num_samples", 0))
    ref = int(report.fid.get("fid_reference_count", p.get("reference_count", 0)))
    split = p.get("reference_split", "?")
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
        f"the {split} split's statistics over {subset}; {weights}. Fewer samples than the paper's usual 50,000 "
        "inflate FID, so compare FIDs only at equal N."
    )


def _paper_note(report: Report) -> str:
    if report.paper_dataset is None:
        return ""
    name = DATASET_NAMES.get(report.paper_dataset, report.paper_dataset)
    base = (
        f"Paper rows: Table 1 on official {name} after full GPU training; the paper reports one linear accuracy "
        "per method (shown under z); their PSNR is computed from their MSE."
    )
    return (
        base if report.comparable else base + f" This run is on {report.data}: the paper's rows are for reference only."
    )


def render_markdown(report: Report) -> str:
    """The report as Markdown: facts, the table, the FID protocol, timings and notes (no figures)."""
    lines = [
        f"# {report.title}",
        "",
        f"Data: {report.data}. " + "; ".join(f"{k} {v}" for k, v in report.facts) + ".",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in result_rows(report)]
    lines += ["", fid_sentence(report)]
    if note := _paper_note(report):
        lines += ["", note]
    lines += [
        "",
        "MSE: per image, the sum over the 3072 values in [0, 1] of the squared error, averaged over the test "
        "split (the paper's unit); PSNR = 10·log10(3072 / MSE).",
    ]
    lines += [f"{n}" for n in report.notes]
    if report.timings:
        lines += ["", "| stage | seconds |", "|---|---|"]
        lines += [f"| {stage} | {seconds:.1f} |" for stage, seconds in report.timings]
    lines += ["", "Figures (reconstructions, DDIM samples, interpolations of z, y and ŷ) are in report.html."]
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


def _figure(name: str, caption: str, data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    return (
        f"<figure id='{html.escape(name.removesuffix('.png'))}'><img alt='{html.escape(name)}' "
        f"src='{png_data_uri(data)}' width='{FIGURE_SCALE * width}' height='{FIGURE_SCALE * height}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page (figures as data URIs, CSS inline, no scripts)."""
    e = html.escape
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(report.title)}</title>"
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{e(report.title)}</h1>",
        f"<p>Data: <b>{e(report.data)}</b>. "
        + "; ".join(f"{e(k)} <code>{e(v)}</code>" for k, v in report.facts)
        + ".</p>",
        "<h2>Results</h2><table id='results'><thead><tr>"
        + "".join(f"<th>{e(h)}</th>" for h in HEADER)
        + "</tr></thead><tbody>",
    ]
    for row in result_rows(report):
        parts.append(
            f"<tr class='{'paper' if row.paper else 'ours'}'>"
            + "".join(f"<td>{e(c)}</td>" for c in _cells(row))
            + "</tr>"
        )
    parts.append("</tbody></table>")
    parts.append(f"<p class='note' id='fid-protocol'>{e(fid_sentence(report))}</p>")
    if note := _paper_note(report):
        parts.append(f"<p class='note'>{e(note)}</p>")
    parts.append(
        "<p class='note'>MSE: per image, the sum over the 3072 values in [0, 1] of the squared error, averaged "
        "over the test split (the paper's unit); PSNR = 10·log10(3072 / MSE).</p>"
    )
    parts += [f"<p class='note'>{e(n)}</p>" for n in report.notes]
    parts.append("<h2>Figures</h2>")
    for name, caption in FIGURES:
        if name in report.figures:
            change = report.figure_metrics.get(f"{name.removesuffix('.png')}_pixel_change")
            text = caption if change is None else f"{caption} Mean pixel change across a row: {change:.3f}."
            parts.append(_figure(name, text, report.figures[name]))
    if report.timings:
        parts.append(
            "<h2>Timings</h2><table id='timings'><thead><tr><th>stage</th><th>seconds</th></tr></thead><tbody>"
        )
        parts += [f"<tr><td>{e(stage)}</td><td>{seconds:.1f}</td></tr>" for stage, seconds in report.timings]
        parts.append("</tbody></table>")
    parts.append(
        f"<h2>Configuration</h2><details><summary>resolved config</summary><pre>{e(report.config_yaml)}</pre></details>"
    )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
