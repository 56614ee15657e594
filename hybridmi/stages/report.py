"""Stage report: the page a person reads — report.html (self-contained) and report.md — from the evaluation artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from hybridmi.config import Config
from hybridmi.errors import MissingInput
from hybridmi.eval.report import CURVES, FIGURES, HEADLINE_METRICS, Report, render_html, render_markdown
from hybridmi.paper import paper_dataset
from hybridmi.runtime import atomic_write_bytes, code_version
from hybridmi.stages import STAGE_NAMES
from hybridmi.stages.common import SIDECAR, finish_output

INPUTS = ("probe", "reconstruction", "fid", "figures")
OUTPUTS = ("report",)


def _metrics(directory: Path) -> dict[str, float]:
    path = directory / "metrics.json"
    if not path.is_file():
        raise MissingInput(f"report: {path} is missing (did the stage finish?)")
    return json.loads(path.read_text())


def _pngs(directory: Path, names: list[str]) -> dict[str, bytes]:
    """name -> bytes of the files among ``names`` that ``directory`` holds (a run without a DDIM history has no
    DDIM curve, an α = 0 run no reconstruction curve)."""
    return {name: (directory / name).read_bytes() for name in names if (directory / name).is_file()}


def _sidecar(directory: Path) -> dict[str, Any]:
    path = directory / SIDECAR
    return json.loads(path.read_text()) if path.is_file() else {}


def data_label(cfg: Config) -> str:
    """How the data set is named next to its numbers ("CIFAR-10 (JPEG copy)" for the offline copy)."""
    d = cfg.data
    if d.source == "folder":
        return "CIFAR-10 (JPEG copy)" if d.root and "cifar10-jpeg" in d.root else f"folder data ({d.root})"
    if d.source == "synthetic":
        return (
            f"synthetic data ({d.synthetic_classes} classes, {d.synthetic_train:,} train / {d.synthetic_test:,} test)"
        )
    return {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}[d.source]


def stage_timings(sidecars: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """(stage, seconds) from artifact sidecars that recorded their stage's time, in pipeline order."""
    seconds = {s["stage"]: float(s["seconds"]) for s in sidecars if "stage" in s and "seconds" in s}
    return [(stage, seconds[stage]) for stage in STAGE_NAMES if stage in seconds]


def build_report(cfg: Config, inputs: dict[str, Path]) -> Report:
    """The Report of a run from the report stage's input directories."""
    fid_sidecar = _sidecar(inputs["fid"])
    upstream = fid_sidecar.get("upstream", {})
    protocol = fid_sidecar.get("fid_protocol")
    checksum = upstream.get("dataset", {}).get("dataset_checksum") or (protocol or {}).get("reference_checksum", "?")
    timings = stage_timings(
        [*upstream.values(), *(_sidecar(inputs[k]) for k in ("probe", "reconstruction", "fid", "figures"))]
    )
    source = cfg.data.source
    facts = [
        ("run", cfg.name),
        ("α", f"{cfg.objective.alpha:g}"),
        ("training", f"{cfg.train.epochs:g} epochs"),
        ("latent DDIM", f"{cfg.ddim.epochs:g} epochs"),
        ("config hash", cfg.hash()),
        ("data checksum", checksum),
        ("code", code_version()),
    ]
    for record in upstream.values():  # the precision and layout each trainer ran with (runtime auto policy)
        if "compute" in record:
            compute = record["compute"]
            layout = "channels_last" if compute["channels_last"] else "NCHW"
            facts.append((f"{record['stage']} compute", f"{compute['precision']}, {layout}"))
    notes = []
    if source == "folder":
        notes.append(
            "Folder data such as the CIFAR-10 JPEG copy is not the official CIFAR bytes: numbers are close to, "
            "not equal to, numbers on the official data."
        )
    return Report(
        title=f"hybridmi report: {cfg.name}",
        data=data_label(cfg),
        paper_dataset=paper_dataset(source) or "cifar10",
        comparable=source in ("cifar10", "cifar100"),
        probe=_metrics(inputs["probe"]),
        reconstruction=_metrics(inputs["reconstruction"]),
        fid=_metrics(inputs["fid"]),
        fid_protocol=protocol,
        figures=_pngs(inputs["figures"], [name for name, _ in FIGURES]),
        curves=_pngs(inputs["figures"], [name for name, *_ in CURVES]),
        figure_metrics=_metrics(inputs["figures"]),
        timings=timings,
        facts=facts,
        config_yaml=yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False),
        notes=notes,
    )


def run(cfg: Config, inputs: dict[str, Path], outputs: dict[str, Path], *, callbacks=()) -> dict[str, float]:
    report = build_report(cfg, inputs)
    out = outputs["report"]
    atomic_write_bytes(out / "report.md", render_markdown(report).encode())
    atomic_write_bytes(out / "report.html", render_html(report).encode())
    values = {**report.reconstruction, **report.probe, **report.fid}
    metrics = {k: float(values[k]) for k in HEADLINE_METRICS if k in values}
    finish_output(out, cfg, stage="report", metrics=metrics)
    return metrics
