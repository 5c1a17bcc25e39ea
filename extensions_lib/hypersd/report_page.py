"""Self-contained HTML reports: image grids (PNG inline), SVG line charts and tables. Pure; PIL and numpy only.

Used by the distillation quality report (``hypersd.distill.report``), which the CLI, the Train tab and the demo
all write.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 (WebUI ships 9.5) has one fixed-size bitmap font
        return ImageFont.load_default()


def latin1(text: str) -> str:
    """PIL's built-in bitmap font (Pillow < 10.1, as in WebUI 1.10) draws Latin-1 only: anything else would raise."""
    return text.encode("latin-1", "replace").decode("latin-1")


def make_grid(
    rows: list[tuple[str, np.ndarray]], scale: int = 2, label_width: int = 230, header: Sequence[str] = ()
) -> Image.Image:
    """One row per (label, ``[cols, H, W, 3]`` uint8 images); the same column is the same noise and prompt."""
    cols, h, w = rows[0][1].shape[:3]
    cell_h, cell_w, pad = h * scale, w * scale, 2
    top = 16 if header else 0
    img = Image.new("RGB", (label_width + cols * (cell_w + pad), top + len(rows) * (cell_h + pad)), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = _font(13)
    for c, text in enumerate(header[:cols]):
        draw.text(
            (label_width + c * (cell_w + pad), 1), latin1(text[: max(4, cell_w // 7)]), fill=(60, 60, 60), font=font
        )
    for r, (label, images) in enumerate(rows):
        y = top + r * (cell_h + pad)
        draw.text((6, y + cell_h // 2 - 8), latin1(label), fill=(0, 0, 0), font=font)
        for c in range(min(cols, len(images))):
            tile = Image.fromarray(images[c]).resize((cell_w, cell_h), Image.Resampling.NEAREST)
            img.paste(tile, (label_width + c * (cell_w + pad), y))
    return img


def png_base64(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def svg_line_chart(
    series: dict[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    x_label: str,
    log_y: bool = True,
    log_x: bool = False,
    width: int = 640,
    height: int = 280,
    dashed: Sequence[str] = (),
) -> str:
    """A self-contained SVG chart of several (x, y) series; ``dashed`` names series drawn dashed (references)."""
    left, right, top, bottom = 62, 210, 28, 34
    pw, ph = width - left - right, height - top - bottom
    points = [(x, y) for pts in series.values() for x, y in pts if math.isfinite(y) and (y > 0 or not log_y)]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="16" font-size="13">{html.escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>',
    ]
    if points:
        fy = (lambda v: math.log10(v)) if log_y else (lambda v: v)
        fx = (lambda v: math.log2(v)) if log_x else (lambda v: v)
        ys, xs = [fy(y) for _, y in points], [fx(x) for x, _ in points]
        y_lo, y_hi = min(ys), max(ys)
        y_hi = y_hi if y_hi > y_lo else y_lo + 1
        x_lo, x_hi = min(xs), max(xs)
        x_hi = x_hi if x_hi > x_lo else x_lo + 1

        def xy(x: float, y: float) -> tuple[float, float]:
            return left + pw * (fx(x) - x_lo) / (x_hi - x_lo), top + ph * (y_hi - fy(y)) / (y_hi - y_lo)

        for x in sorted({x for x, _ in points}):
            px, _ = xy(x, 10**y_lo if log_y else y_lo)
            parts.append(f'<text x="{px:.1f}" y="{top + ph + 14}" text-anchor="middle">{x:g}</text>')
        for frac in (0.0, 0.5, 1.0):
            value = y_lo + frac * (y_hi - y_lo)
            shown = 10**value if log_y else value
            _, py = xy(10**x_lo if log_x else x_lo, shown)
            parts.append(f'<text x="{left - 6}" y="{py + 4:.1f}" text-anchor="end">{shown:.3g}</text>')
        parts.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">{html.escape(x_label)}</text>')
        for j, (name, pts) in enumerate(series.items()):
            color = COLORS[j % len(COLORS)]
            good = [(x, y) for x, y in pts if math.isfinite(y) and (y > 0 or not log_y)]
            coords = " ".join(f"{a:.1f},{b:.1f}" for a, b in (xy(x, y) for x, y in good))
            dash = ' stroke-dasharray="5,4"' if name in dashed else ""
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6"{dash} points="{coords}"/>')
            for a, b in (xy(x, y) for x, y in good):
                parts.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="{color}"/>')
            parts.append(f'<text x="{left + pw + 8}" y="{top + 12 + 15 * j}" fill="{color}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def html_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    """One page; each section is (heading, HTML that the caller built from escaped parts)."""
    body = "".join(f"<h2>{html.escape(h)}</h2>\n{content}\n" for h, content in sections)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}}
pre{{background:#f6f6f6;padding:1em;overflow-x:auto}} img{{image-rendering:pixelated;max-width:100%}}
table{{border-collapse:collapse}} td,th{{padding:2px 10px;border-bottom:1px solid #eee;text-align:right}}
th{{background:#f3f3f3}}</style></head><body>
<h1>{html.escape(title)}</h1>
{body}</body></html>
"""


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` [N, D] and ``b`` [M, D] (as FID computes it):
    ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)``, in float64, by symmetric eigendecompositions."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError(
            f"Hyper-SD: Fréchet distance needs two [N, D] feature sets with N >= 2, got {a.shape}, {b.shape}"
        )
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root_a @ s_b @ root_a)
    trace_root = np.sqrt(np.clip(inner, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * trace_root)
