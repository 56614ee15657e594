"""Single-file renderings for the KFP UI: an inline-PNG gallery, Markdown/HTML copies, a Pillow scatter plot."""

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
    """Enough decimals that neighbouring ticks (span/4 apart) read differently."""
    decimals = max(0, 1 - math.floor(math.log10(span / 4))) if span > 0 else 2
    return f"{value:.{min(decimals, 6)}f}"


def _span(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.05, 1e-3)
    return lo - pad, hi + pad


def scatter_png(
    series: dict[str, list[tuple[float, float, str]]], *, x_label: str, y_label: str, size: tuple[int, int] = (640, 440)
) -> bytes:
    """A scatter plot with lines in x order: series name -> [(x, y, point label)]; returns PNG bytes."""
    points = [(x, y) for pts in series.values() for x, y, _ in pts]
    if not points:
        raise ValueError("scatter plot needs at least one point")
    (width, height), (left, right, top, bottom) = size, (70, 130, 20, 50)
    (x_lo, x_hi), (y_lo, y_hi) = _span([p[0] for p in points]), _span([p[1] for p in points])
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)

    def to_px(x: float, y: float) -> tuple[float, float]:
        px = left + (x - x_lo) / (x_hi - x_lo) * (width - left - right)
        return px, height - bottom - (y - y_lo) / (y_hi - y_lo) * (height - top - bottom)

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for tx in (x_lo + (x_hi - x_lo) * i / 4 for i in range(5)):
        px, _ = to_px(tx, y_lo)
        draw.line([px, height - bottom, px, height - bottom + 4], fill="black")
        draw.text((px - 14, height - bottom + 6), _tick_label(tx, x_hi - x_lo), fill="black")
    for ty in (y_lo + (y_hi - y_lo) * i / 4 for i in range(5)):
        _, py = to_px(x_lo, ty)
        draw.line([left - 4, py, left, py], fill="black")
        draw.text((8, py - 5), _tick_label(ty, y_hi - y_lo), fill="black")
    draw.text(((left + width - right) / 2 - 3 * len(x_label), height - 20), x_label, fill="black")
    draw.text((8, 4), y_label, fill="black")
    for index, (name, pts) in enumerate(series.items()):
        color = PALETTE[index % len(PALETTE)]
        pixels = [to_px(x, y) for x, y, _ in sorted(pts)]
        if len(pixels) > 1:
            draw.line(pixels, fill=color, width=2)
        for (px, py), (_, _, label) in zip(pixels, sorted(pts)):
            draw.ellipse([px - 4, py - 4, px + 4, py + 4], fill=color)
            draw.text((px + 6, py - 12), label, fill=color)
        legend_y = top + 16 * index
        draw.ellipse([width - right + 10, legend_y + 2, width - right + 18, legend_y + 10], fill=color)
        draw.text((width - right + 22, legend_y), name, fill=color)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
