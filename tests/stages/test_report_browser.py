"""The report page in a real browser: headless Chromium (Debian's package, installed by scripts/services.sh)
renders it, and the screenshot shows the results table and every figure, not an empty page.

The page is the report stage's own renderer on a Report whose figures are solid, distinct colours, so
each figure can be found in the screenshot by its colour; the table by its header and row colours,
with text drawn inside it. Its training curves, and the α sweep's frontier page, are drawn by the code the
stages run; a script added to a copy of each page reports every image's naturalWidth once it has loaded.
Skipped without chromium unless CI is set (then it fails).
"""

import html
import io
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from hybridmi.eval.curves import curve_pngs
from hybridmi.eval.report import CURVES, FIGURE_SCALE, FIGURES, Report, render_html
from hybridmi.task.tradeoff import write_tradeoff

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
HISTORIES = {  # α = 0.5: both loss terms; the DDIM's one term
    "hybrid": [
        {"step": s, "loss": 8.0 / s, "recon": 9.0 / s, "infonce": 7.0 / s, "lr": 0.03 * s, "images_per_s": 500.0 + s}
        for s in (10, 20, 30)
    ],
    "ddim": [{"step": s, "loss": 2.0 / s, "mse": 1.0 / s, "lr": 2e-4, "images_per_s": 900.0} for s in (5, 10, 15)],
}
# Added to a copy of a page: once every image has loaded, the body lists each image's natural width by its id.
IMAGE_WIDTHS = """<script>
window.addEventListener('load', () => {
  const widths = Array.from(document.images, i => [i.closest('figure')?.id || i.id, i.naturalWidth]);
  document.body.setAttribute('data-widths', JSON.stringify(Object.fromEntries(widths)));
});
</script>"""
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
        curves=curve_pngs(HISTORIES),
    )


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    directory = tmp_path_factory.mktemp("page")
    path = directory / "report.html"
    path.write_text(render_html(known_report()))
    return path


def loaded_widths(page, *, tmp_path) -> dict[str, int]:
    """Image id (its figure's id in the report) -> naturalWidth in Chromium, after the page's load event."""
    probe = tmp_path / f"widths-{page.name}"
    probe.write_text(page.read_text().replace("</body>", IMAGE_WIDTHS + "</body>"))
    dom = browse(probe, "--dump-dom", tmp_path=tmp_path).stdout
    found = re.search(r'data-widths="([^"]*)"', dom)
    assert found, "the load event never fired"
    return json.loads(html.unescape(found.group(1)))


def matching(pixels: np.ndarray, colour: tuple[int, int, int], *, tolerance: int = 3) -> np.ndarray:
    return (np.abs(pixels.astype(int) - np.array(colour)) <= tolerance).all(axis=-1)


def test_browser__dom_holds_the_table_rows_and_every_figure(page, tmp_path):
    dom = browse(page, "--dump-dom", tmp_path=tmp_path).stdout
    assert dom.count("<tr") == 1 + 1 + 5 + 3  # results: header, this run, 5 paper rows; timings: header + 2
    assert "87.2" in dom and "51.2" in dom and dom.count("data:image/png;base64,") == len(FIGURES) + len(CURVES)


def test_browser__every_figure_and_training_curve_loads(page, tmp_path):
    figures = {name.removesuffix(".png"): FIGURE_PIXELS for name, _ in FIGURES}
    curves = {name.removesuffix(".png"): 560 for name, *_ in CURVES}  # line_png's width
    assert loaded_widths(page, tmp_path=tmp_path) == {**figures, **curves}


def test_browser__the_alpha_sweeps_frontier_loads(tmp_path):
    rows = [{"alpha": a, "linear_acc_z": 0.6 - 0.4 * a, "mse": 9.0 - 8.0 * a, "psnr": 20.0} for a in (0.0, 0.5, 1.0)]
    page = tmp_path / "sweep.html"
    write_tradeoff(rows, table_path=tmp_path / "t.md", csv_path=tmp_path / "t.csv", html_path=page, paper="cifar10")
    assert loaded_widths(page, tmp_path=tmp_path) == {"frontier": 640}


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
