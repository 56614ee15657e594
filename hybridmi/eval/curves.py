"""Training curves: columns of the trainers' histories (history.json rows) against step, as PNG line plots."""

from __future__ import annotations

from typing import Mapping, Sequence

from hybridmi.eval.render import line_png
from hybridmi.eval.report import CURVES


def curve_pngs(histories: Mapping[str, Sequence[Mapping[str, float]]]) -> dict[str, bytes]:
    """File name -> PNG for each of ``CURVES`` whose trainer ("hybrid", "ddim") has rows holding its column.

    histories: trainer -> its rows ({"step", "loss", <terms>, "lr", "images_per_s", ...}); an α = 0 run has no
    "recon" column, so no reconstruction curve.
    """
    pngs = {}
    for name, trainer, column, label, _ in CURVES:
        points = [(float(row["step"]), float(row[column])) for row in histories.get(trainer, ()) if column in row]
        if points:
            pngs[name] = line_png({trainer: points}, x_label="step", y_label=label)
    return pngs
