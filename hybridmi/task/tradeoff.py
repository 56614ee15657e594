"""The α sweep's result: linear accuracy against reconstruction MSE, one row per α (table, CSV, the frontier plot
with the paper's Table 1 rows marked)."""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path
from typing import Iterable

import yaml

from hybridmi.errors import UsageError
from hybridmi.eval.render import png_data_uri, scatter_png
from hybridmi.paper import TABLE1, paper_dataset
from hybridmi.runtime import atomic_write_bytes
from hybridmi.stages.common import read_sidecar

ACCURACY_PREFIX = "linear_acc_"  # the probe stage's per-feature keys (fractions in [0, 1])
ERROR_KEYS = ("mse", "psnr")  # the reconstruction stage's keys (MSE in the paper's unit, PSNR in dB)


def _alpha_and_metrics(directory: Path) -> tuple[str, float, dict[str, float]]:
    sidecar = read_sidecar(directory)
    cfg = yaml.safe_load((directory / "config.yaml").read_text())
    metrics = json.loads((directory / "metrics.json").read_text())
    return sidecar["config_hash"], float(cfg["objective"]["alpha"]), metrics


def tradeoff_rows(
    probe_dirs: Iterable[str | Path], reconstruction_dirs: Iterable[str | Path]
) -> list[dict[str, float]]:
    """One row per α: alpha, linear_acc_<feature>..., mse, psnr; sorted by α.

    Every probe must have a reconstruction of the same config (and vice versa); ValueError otherwise.
    """
    probes = {h: (a, m) for h, a, m in map(_alpha_and_metrics, map(Path, probe_dirs))}
    recons = {h: (a, m) for h, a, m in map(_alpha_and_metrics, map(Path, reconstruction_dirs))}
    if probes.keys() != recons.keys():
        raise UsageError(
            f"probe and reconstruction results do not pair up by config: "
            f"{sorted(probes.keys() ^ recons.keys())} have only one of the two"
        )
    rows = []
    for key, (alpha, probe) in probes.items():
        recon = recons[key][1]
        missing = [k for k in ERROR_KEYS if k not in recon]
        if missing:
            raise UsageError(f"reconstruction metrics for alpha {alpha} lack {', '.join(missing)}")
        accuracies = {k: float(v) for k, v in sorted(probe.items()) if k.startswith(ACCURACY_PREFIX)}
        if not accuracies:
            raise UsageError(f"probe metrics for alpha {alpha} have no {ACCURACY_PREFIX}* key")
        rows.append({"alpha": alpha, **accuracies, **{k: float(recon[k]) for k in ERROR_KEYS}})
    return sorted(rows, key=lambda row: row["alpha"])


def sweep_paper_dataset(probe_dirs: Iterable[str | Path]) -> str | None:
    """The Table 1 column group ("cifar10" | "cifar100") the sweep's data set compares with; None when it has none
    (synthetic data) or the probes were made from different sources."""
    sources = {yaml.safe_load((Path(d) / "config.yaml").read_text())["data"]["source"] for d in probe_dirs}
    return paper_dataset(sources.pop()) if len(sources) == 1 else None


def paper_points(dataset: str) -> list[tuple[float, float, str]]:
    """(MSE, linear accuracy %, method) of Table 1's rows on ``dataset`` that report both (MoCo-v2 and BigGAN have no MSE)."""
    return [
        (v["mse"], v["acc"], method)
        for method, columns in TABLE1.items()
        if (v := columns[dataset])["mse"] is not None and v["acc"] is not None
    ]


def _columns(rows: list[dict[str, float]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    return columns


def markdown_table(rows: list[dict[str, float]]) -> str:
    """A Markdown table of the rows (accuracies in %, MSE and PSNR to 3 decimals)."""
    columns = _columns(rows)

    def cell(key: str, value: float | None) -> str:
        if value is None:
            return "—"
        return (
            f"{100 * value:.1f}"
            if key.startswith(ACCURACY_PREFIX)
            else f"{value:.3f}"
            if key != "alpha"
            else f"{value:g}"
        )

    header = [f"{c} (%)" if c.startswith(ACCURACY_PREFIX) else c for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(c, row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict[str, float]]) -> str:
    """The rows as CSV with a header (raw values: accuracies as fractions)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def tradeoff_png(rows: list[dict[str, float]], *, paper: str | None = None) -> bytes:
    """The frontier: linear accuracy (%) against MSE, one series per probed feature with one point per α (labelled
    ``a=<α>``: Pillow's font is ASCII), and Table 1's rows on ``paper`` ("cifar10" | "cifar100") as squares."""
    features = [c for c in _columns(rows) if c.startswith(ACCURACY_PREFIX)]
    series = {
        f.removeprefix(ACCURACY_PREFIX): [(row["mse"], 100 * row[f], f"a={row['alpha']:g}") for row in rows if f in row]
        for f in features
    }
    marks = {"paper (Table 1)": paper_points(paper)} if paper is not None else None
    return scatter_png(
        series,
        marks=marks,
        x_label="reconstruction MSE (sum over 3072 values per image)",
        y_label="linear accuracy (%)",
    )


def _paper_note(paper: str | None) -> str:
    if paper is None:
        return "No paper rows: the sweep's data set is not one of the paper's."
    cells = []
    for method, columns in TABLE1.items():
        v = columns[paper]
        cells.append(
            f"{method} {v['acc']:g} % at MSE {v['mse']:g}"
            if v["mse"] is not None
            else f"{method} {v['acc']:g} % (no MSE)"
        )
    return f"Squares: the paper's Table 1 on {paper} after full GPU training ({'; '.join(cells)})."


def write_tradeoff(
    rows: list[dict[str, float]],
    *,
    table_path: str | Path,
    csv_path: str | Path,
    html_path: str | Path,
    paper: str | None = None,
) -> None:
    """Write the Markdown table, the CSV and an HTML page (the frontier plot, with the paper's rows on ``paper``
    marked, and the table) for the KFP UI."""
    if not rows:
        raise UsageError("the alpha sweep produced no results")
    table = markdown_table(rows)
    atomic_write_bytes(table_path, table.encode())
    atomic_write_bytes(csv_path, csv_text(rows).encode())
    page = (
        "<html><head><meta charset='utf-8'><title>alpha sweep</title></head><body>"
        "<h1>Linear accuracy against reconstruction MSE</h1>"
        f"<img id='frontier' alt='frontier' src='{png_data_uri(tradeoff_png(rows, paper=paper))}'>"
        f"<p>{html.escape(_paper_note(paper))}</p><pre>{html.escape(table)}</pre></body></html>\n"
    )
    atomic_write_bytes(html_path, page.encode())
