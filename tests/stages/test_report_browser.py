"""The report page in a real browser: headless Chromium (Debian's package, installed by scripts/services.sh)
renders it, and the screenshot shows the results table and every figure, not an empty page.

The page is the report stage's own renderer on a Report whose figures are solid, distinct colours, so
each figure can be found in the screenshot by its colour; the table by its header and row colours,
with text drawn inside it. Skipped without chromium unless CI is set (then it fails).
"""

import io
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from hybridmi.eval.report import FIGURE_SCALE, FIGURES, Report, render_html

pytestmark = pytest.mark.services

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--force-color-profile=srgb",
)
WINDOW = (1280, 2400)
FIGURE_PIXELS = 40  # each test figure is a solid 40x40 PNG
COLOURS = {  # figure file -> its solid colour
    "reconstructions.png": (230, 20, 20),
    "samples.png": (20, 170, 40),
    "interp_z.png": (30, 40, 220),
    "interp_y.png": (200, 30, 200),
    "interp_yhat.png": (20, 190, 200),
}
TABLE_HEADER = (0xDC, 0xE6, 0xF5)  # th background in eval/report.py's STYLE
OUR_ROW = (0xFF, 0xF3, 0xC4)  # tr.ours background


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        message = "chromium is not installed (scripts/services.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI is set, so this is a failure, not a skip")
        pytest.skip(message)
    return path


def browse(page, *args: str, tmp_path) -> subprocess.CompletedProcess:
    """Run headless Chromium on a local page with a fresh profile; no network, no first-run work."""
    profile = tmp_path / "profile"
    command = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def solid_png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (FIGURE_PIXELS, FIGURE_PIXELS), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def known_report() -> Report:
    return Report(
        title="hybridmi report: browser check",
        data="synthetic data",
        paper_dataset="cifar10",
        comparable=False,
        probe={"linear_acc_z": 0.512, "linear_acc_y": 0.401, "linear_acc_yhat": 0.433, "knn_acc_z": 0.318},
        reconstruction={"mse": 4.24, "psnr": 28.6},
        fid={"fid": 87.25, "fid_num_samples": 200.0, "fid_reference_count": 200.0},
        fid_protocol={
            "reference_split": "train",
            "reference_count": 200,
            "reference_split_size": 2000,
            "reference_subset_seed": 0,
            "weights_sha256": "ab" * 32,
            "weights_record": {"source_requirement": "x"},
            "sampling": {"steps": 10, "eta": 0.0},
        },
        figures={name: solid_png(COLOURS[name]) for name, _ in FIGURES},
        figure_metrics={},
        timings=[("prepare", 1.0), ("train", 30.0)],
        facts=[("α", "0.5")],
        config_yaml="name: browser-check\n",
    )


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    directory = tmp_path_factory.mktemp("page")
    path = directory / "report.html"
    path.write_text(render_html(known_report()))
    return path


def matching(pixels: np.ndarray, colour: tuple[int, int, int], *, tolerance: int = 3) -> np.ndarray:
    return (np.abs(pixels.astype(int) - np.array(colour)) <= tolerance).all(axis=-1)


def test_browser__dom_holds_the_table_rows_and_every_figure(page, tmp_path):
    dom = browse(page, "--dump-dom", tmp_path=tmp_path).stdout
    assert dom.count("<tr") == 1 + 1 + 5 + 3  # results: header, this run, 5 paper rows; timings: header + 2
    assert "87.2" in dom and "51.2" in dom and dom.count("data:image/png;base64,") == len(FIGURES)


def test_browser__screenshot_shows_the_table_and_every_figure(page, tmp_path):
    shot = tmp_path / "shot.png"
    browse(page, f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={shot}", tmp_path=tmp_path)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    figure_area = (FIGURE_SCALE * FIGURE_PIXELS) ** 2
    for name, colour in COLOURS.items():
        area = int(matching(pixels, colour).sum())
        assert area >= 0.95 * figure_area, f"{name}: {area} pixels of its colour, expected about {figure_area}"
    header, ours = matching(pixels, TABLE_HEADER), matching(pixels, OUR_ROW)
    assert header.sum() > 5000 and ours.sum() > 5000  # the table's header and our row are drawn
    rows, cols = np.nonzero(ours)
    inside = pixels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    assert (inside.max(axis=-1) < 100).sum() > 200  # dark text (the numbers) inside our row
    first_figure = min(np.nonzero(matching(pixels, c))[0].min() for c in COLOURS.values())
    assert np.nonzero(header)[0].min() < rows.min() < first_figure  # layout: table header, our row, then figures
