"""Training curves: one PNG per history column the trainer reported, a line drawn where the points are."""

import io

import numpy as np
import pytest
from PIL import Image, ImageColor

from hybridmi.eval.curves import curve_pngs
from hybridmi.eval.render import PALETTE, line_png
from hybridmi.eval.report import CURVES

LINE = ImageColor.getrgb(PALETTE[0])


def _rows(*terms: str) -> list[dict[str, float]]:
    return [
        {
            "step": s,
            "epoch": s / 10,
            "loss": 5.0 / s,
            "lr": 0.1 * s,
            "images_per_s": 100.0,
            **{t: 1.0 / s for t in terms},
        }
        for s in (10, 20, 30, 40)
    ]


def _line_pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.size == (560, 320)
        return (np.asarray(image.convert("RGB")) == LINE).all(axis=-1)


def test_curve_pngs__one_curve_per_reported_column_of_each_trainer():
    hybrid = curve_pngs({"hybrid": _rows("recon", "infonce"), "ddim": _rows("mse")})
    assert list(hybrid) == [name for name, *_ in CURVES]  # in page order
    moco_only = curve_pngs({"hybrid": _rows("infonce")})  # α = 0: no reconstruction term, no DDIM history
    assert sorted(moco_only) == ["curve_infonce.png", "curve_loss.png", "curve_lr.png", "curve_throughput.png"]
    assert curve_pngs({}) == {}


def test_line_png__draws_a_falling_line_from_top_left_to_bottom_right():
    line = _line_pixels(
        line_png({"loss": [(1.0, 4.0), (2.0, 3.0), (3.0, 2.0), (4.0, 1.0)]}, x_label="step", y_label="l")
    )
    rows, cols = np.nonzero(line[:, :425])  # the plot area (the legend is to the right of x = 430)
    assert len(rows) > 300  # a line, not a few dots
    assert rows[cols.argmin()] < rows[cols.argmax()]  # the leftmost point is the highest: y falls with x


def test_line_png__a_single_report_is_a_dot_and_bad_points_are_refused():
    assert _line_pixels(line_png({"loss": [(5.0, 1.0)]}, x_label="step", y_label="l")).sum() > 20
    with pytest.raises(ValueError, match="at least one point"):
        line_png({"loss": []}, x_label="step", y_label="l")
    with pytest.raises(ValueError, match="not finite"):
        line_png({"loss": [(1.0, float("nan"))]}, x_label="step", y_label="l")
