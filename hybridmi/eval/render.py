"""Single-file renderings for the KFP UI: an inline-PNG gallery, Markdown/HTML copies; Pillow scatter and line plots."""

from __future__ import annotations

import html
import io
import math
import shutil
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw

from hybridmi.eval.report import png_data_uri
from hybridmi.runtime import atomic_write_bytes

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")


def gallery_html(directory: str | Path, *, title: str) -> str:
    """An HTML page with every PNG under ``directory`` (sorted by relative path) embedded, captioned."""
    directory = Path(directory)
    pngs = sorted(directory.rglob("*.png"))
    if not pngs:
        raise FileNotFoundError(f"no PNG figures in {directory}")
    title = html.escape(title)
    parts = [f"<html><head><meta charset='utf-8'><title>{title}</title></head><body>", f"<h1>{title}</h1>"]
    for png in pngs:
        image = f"<img src='{png_data_uri(png.read_bytes())}' style='image-rendering:pixelated;max-width:100%'>"
        parts.append(f"<figure>{image}<figcaption>{html.escape(str(png.relative_to(directory)))}</figcaption></figure>")
    return "\n".join([*parts, "</body></html>"]) + "\n"


def write_gallery(directory: str | Path, html_path: str | Path, *, title: str) -> Path:
    """Write ``gallery_html(directory)`` to ``html_path`` (an HTML artifact's file)."""
    return atomic_write_bytes(html_path, gallery_html(directory, title=title).encode())


def copy_markdown(directory: str | Path, markdown_path: str | Path) -> Path:
    return _copy_first(directory, "*.md", markdown_path, what="Markdown file")


def copy_html(directory: str | Path, html_path: str | Path) -> Path:
    return _copy_first(directory, "*.html", html_path, what="HTML page")


def _copy_first(directory: str | Path, pattern: str, target: str | Path, *, what: str) -> Path:
    """Copy the first (sorted) match of ``pattern`` in an artifact directory to ``target``."""
    matches = sorted(Path(directory).glob(pattern))
    if not matches:
        raise FileNotFoundError(f"no {what} in artifact {directory}")
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(matches[0], target))


def _tick_label(value: float, span: float) -> str:
    """Enough decimals that neighbouring ticks (span/4 apart) read differently; powers of ten for tiny spans."""
    decimals = max(0, 1 - math.floor(math.log10(span / 4))) if span > 0 else 2
    return f"{value:.{decimals}f}" if decimals <= 6 else f"{value:.2e}"


def _span(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.05, 1e-3)
    return lo - pad, hi + pad


class _Axes:
    """A white image with a framed plot area over the span of ``xs`` × ``ys``, five ticks on each axis, the axis
    labels and a legend column on the right. Pillow's default font: ASCII labels only."""

    LEFT, RIGHT, TOP, BOTTOM = 70, 130, 20, 50  # margins in pixels (the right one holds the legend)

    def __init__(self, xs: Sequence[float], ys: Sequence[float], *, x_label: str, y_label: str, size: tuple[int, int]):
        self.size, self.entries = size, 0
        (self.x_lo, self.x_hi), (self.y_lo, self.y_hi) = _span(xs), _span(ys)
        self.image = Image.new("RGB", size, "white")
        self.draw = draw = ImageDraw.Draw(self.image)
        (width, height), bottom = size, size[1] - self.BOTTOM
        draw.rectangle([self.LEFT, self.TOP, width - self.RIGHT, bottom], outline="black")
        for i in range(5):
            tx, ty = (lo + (hi - lo) * i / 4 for lo, hi in ((self.x_lo, self.x_hi), (self.y_lo, self.y_hi)))
            (px, _), (_, py) = self.px(tx, self.y_lo), self.px(self.x_lo, ty)
            draw.line([px, bottom, px, bottom + 4], fill="black")
            draw.text((px - 14, bottom + 6), _tick_label(tx, self.x_hi - self.x_lo), fill="black")
            draw.line([self.LEFT - 4, py, self.LEFT, py], fill="black")
            draw.text((8, py - 5), _tick_label(ty, self.y_hi - self.y_lo), fill="black")
        draw.text(((self.LEFT + width - self.RIGHT) / 2 - 3 * len(x_label), height - 20), x_label, fill="black")
        draw.text((8, 4), y_label, fill="black")

    def px(self, x: float, y: float) -> tuple[float, float]:
        """Image pixel of the data point (x, y)."""
        (width, height), left, top = self.size, self.LEFT, self.TOP
        px = left + (x - self.x_lo) / (self.x_hi - self.x_lo) * (width - left - self.RIGHT)
        return px, height - self.BOTTOM - (y - self.y_lo) / (self.y_hi - self.y_lo) * (height - top - self.BOTTOM)

    def dot(self, xy: tuple[float, float], color: str, *, square: bool = False) -> None:
        px, py = xy
        (self.draw.rectangle if square else self.draw.ellipse)([px - 4, py - 4, px + 4, py + 4], fill=color)

    def legend(self, name: str, color: str, *, square: bool = False) -> None:
        x, y = self.size[0] - self.RIGHT + 14, self.TOP + 16 * self.entries + 6
        self.dot((x, y), color, square=square)
        self.draw.text((x + 8, y - 6), name, fill=color)
        self.entries += 1

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.image.save(buffer, format="PNG")
        return buffer.getvalue()


Point = tuple[float, float, str]  # (x, y, label drawn beside it)


def scatter_png(
    series: dict[str, list[Point]],
    *,
    x_label: str,
    y_label: str,
    marks: dict[str, list[Point]] | None = None,
    size: tuple[int, int] = (640, 440),
) -> bytes:
    """A scatter plot, each series' points joined in x order, plus ``marks``: reference points drawn as squares and
    not joined (e.g. a paper's rows). Series or mark name -> [(x, y, point label)]; returns PNG bytes."""
    marks = marks or {}
    points = [(x, y) for group in (series, marks) for pts in group.values() for x, y, _ in pts]
    if not points:
        raise ValueError("scatter plot needs at least one point")
    axes = _Axes([p[0] for p in points], [p[1] for p in points], x_label=x_label, y_label=y_label, size=size)
    for index, (name, pts) in enumerate([*series.items(), *marks.items()]):
        color, square = PALETTE[index % len(PALETTE)], index >= len(series)
        pts = sorted(pts)
        pixels = [axes.px(x, y) for x, y, _ in pts]
        if len(pixels) > 1 and not square:
            axes.draw.line(pixels, fill=color, width=2)
        for (px, py), (_, _, label) in zip(pixels, pts):
            axes.dot((px, py), color, square=square)
            axes.draw.text((px + 6, py - 12), label, fill=color)
        axes.legend(name, color, square=square)
    return axes.png()


def line_png(
    series: dict[str, list[tuple[float, float]]], *, x_label: str, y_label: str, size: tuple[int, int] = (560, 320)
) -> bytes:
    """A line plot: series name -> [(x, y)], each drawn as a line in x order (a lone point as a dot); PNG bytes."""
    points = [p for pts in series.values() for p in pts]
    if not points:
        raise ValueError("line plot needs at least one point")
    bad = next((p for p in points if not all(map(math.isfinite, p))), None)
    if bad is not None:
        raise ValueError(f"line plot point {bad} is not finite")
    axes = _Axes([p[0] for p in points], [p[1] for p in points], x_label=x_label, y_label=y_label, size=size)
    for index, (name, pts) in enumerate(series.items()):
        color = PALETTE[index % len(PALETTE)]
        pixels = [axes.px(x, y) for x, y in sorted(pts)]
        if len(pixels) > 1:
            axes.draw.line(pixels, fill=color, width=2)
        elif pixels:
            axes.dot(pixels[0], color)
        axes.legend(name, color)
    return axes.png()
