"""Stage report: one Markdown page with this run's numbers beside the paper's Table 1."""
from __future__ import annotations

import json
from pathlib import Path

from hybridmi.config import Config
from hybridmi.paper import TABLE1, paper_dataset
from hybridmi.runtime import atomic_write_bytes
from hybridmi.stages.common import finish_output

INPUTS = ("probe", "reconstruction", "fid")
OUTPUTS = ("report",)


def _metrics(directory: Path) -> dict[str, float]:
    path = directory / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"report: {path} is missing (did the stage finish?)")
    return json.loads(path.read_text())


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def render_report(cfg: Config, probe: dict, recon: dict, fid: dict) -> str:
    """Markdown: run summary, a comparison table, and the caveats that belong next to the numbers."""
    dataset = paper_dataset(cfg.data.source)
    label = {"folder": f"folder data ({cfg.data.root})", "synthetic": "synthetic data"}.get(cfg.data.source, cfg.data.source.upper())
    samples = int(fid.get("fid_num_samples", 0))
    lines = [
        f"# hybridmi report: {cfg.name}",
        "",
        f"Data: {label}; α = {cfg.objective.alpha}; {cfg.train.epochs:g} epochs; config hash {cfg.hash()}.",
        "",
        "| method | MSE | FID | Acc. (%) |",
        "|---|---|---|---|",
        f"| this run | {recon['mse']:.3f} | {_cell(fid.get('fid'), '.1f')} ({samples} samples) | {100 * probe['linear_acc']:.1f} |",
    ]
    if dataset is not None:
        for method, row in TABLE1.items():
            r = row[dataset]
            lines.append(f"| {method} (paper, {dataset}) | {_cell(r['mse'], 'g')} | {_cell(r['fid'], 'g')} | {_cell(r['acc'], 'g')} |")
    lines += [
        "",
        f"Linear accuracy per feature: y {100 * probe.get('linear_acc_y', float('nan')):.1f} %, "
        f"ŷ {100 * probe.get('linear_acc_yhat', float('nan')):.1f} %, z {100 * probe.get('linear_acc_z', float('nan')):.1f} %. "
        f"PSNR {recon['psnr']:.2f} dB.",
        "",
        "MSE: per image, the sum over the 3072 values in [0, 1] of the squared error, averaged over the test split.",
        f"FID uses {samples} samples; fewer samples than the paper's 50,000 inflate FID.",
    ]
    if cfg.data.source == "folder":
        lines.append("Folder data such as the CIFAR-10 JPEG copy is not the official CIFAR bytes: numbers are close to, not equal to, official ones.")
    return "\n".join(lines) + "\n"


def run(cfg: Config, inputs: dict[str, Path], outputs: dict[str, Path], *, callbacks=()) -> dict[str, float]:
    probe, recon, fid = (_metrics(inputs[k]) for k in ("probe", "reconstruction", "fid"))
    atomic_write_bytes(outputs["report"] / "report.md", render_report(cfg, probe, recon, fid).encode())
    metrics = {"linear_acc": probe["linear_acc"], "mse": recon["mse"], "psnr": recon["psnr"]}
    if "fid" in fid:
        metrics["fid"] = fid["fid"]
    finish_output(outputs["report"], cfg, stage="report", metrics=metrics)
    return metrics
