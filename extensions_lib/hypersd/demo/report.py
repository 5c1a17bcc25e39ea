"""The demo's report: the error table, honest verdicts computed from it, the PNG grid, SVG loss curves, HTML.

Pure functions of the measured numbers; nothing here knows how they were produced.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

STUDENT_STEPS = (1, 2, 4, 8)
TEACHER_STEPS = (1, 2, 4, 8, 25)


@dataclass(frozen=True)
class Method:
    key: str
    label: str


METHODS = (
    Method("teacher", "teacher DDIM + CFG"),
    Method("tscd", "TSCD 8>4>2>1, final"),
    Method("tscd_stage", "TSCD, stage k=n at n steps"),
    Method("oneshot", "one-shot CD (k=1 only)"),
)

# per_image[method][steps] = per-noise MSE to the teacher's many-step result (same noise, same label)
PerImage = dict[str, dict[int, list[float]]]


def mean(values: Sequence[float]) -> float:
    return float(np.mean(values))


def paired_comparison(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mean of ``a - b`` over the same noises, and its standard error."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("inf")
    return float(d.mean()), se


def verdict(a: Sequence[float], b: Sequence[float]) -> str:
    """'yes' when a's error is lower than b's by more than 2 paired standard errors, 'no' when higher, else 'tie'."""
    diff, se = paired_comparison(a, b)
    if diff < -2 * se:
        return "yes"
    if diff > 2 * se:
        return "no"
    return "tie"


def format_table(per_image: PerImage, reference_steps: int) -> str:
    """Plain-text table: rows = methods, columns = step counts, cells = mean MSE to the reference."""
    steps = sorted({s for rows in per_image.values() for s in rows})
    head = f"{'MSE to teacher ' + str(reference_steps) + '-step DDIM':<34}" + "".join(
        f"{f'{s} step' + ('s' if s > 1 else ''):>11}" for s in steps
    )
    lines = [head, "-" * len(head)]
    for method in METHODS:
        rows = per_image.get(method.key, {})
        cells = "".join(f"{mean(rows[s]):>11.4f}" if s in rows else f"{'-':>11}" for s in steps)
        lines.append(f"{method.label:<34}{cells}")
    return "\n".join(lines)


def verdict_lines(per_image: PerImage) -> list[str]:
    """Honest one-line conclusions, each computed from the numbers (paired over the same noises)."""
    out: list[str] = []
    teacher = per_image["teacher"]
    for key, name in (("tscd", "TSCD student"), ("oneshot", "one-shot CD student")):
        for n in (1, 2, 4, 8):
            if n not in per_image.get(key, {}):
                continue
            v = verdict(per_image[key][n], teacher[n])
            ratio = mean(teacher[n]) / max(mean(per_image[key][n]), 1e-12)
            word = {"yes": "yes", "no": "no", "tie": "no, a tie within noise"}[v]
            out.append(
                f"{name} beats the teacher at {n} step{'s' if n > 1 else ''}: {word} "
                f"({mean(per_image[key][n]):.4f} vs {mean(teacher[n]):.4f}, teacher/student = {ratio:.2f}x)"
            )
    for key, name in (("tscd", "TSCD final"), ("tscd_stage", "TSCD per-stage")):
        for n in (1, 2, 4, 8):
            if n not in per_image.get(key, {}) or n not in per_image.get("oneshot", {}):
                continue
            v = verdict(per_image[key][n], per_image["oneshot"][n])
            a, b = mean(per_image[key][n]), mean(per_image["oneshot"][n])
            if v == "yes":
                text = f"{name} beats one-shot CD at {n} step{'s' if n > 1 else ''} ({a:.4f} vs {b:.4f})"
            elif v == "no":
                text = f"{name} does NOT beat one-shot CD at {n} step{'s' if n > 1 else ''}: one-shot is better ({a:.4f} vs {b:.4f})"
            else:
                text = f"{name} does not beat one-shot CD at {n} step{'s' if n > 1 else ''}: a tie within noise ({a:.4f} vs {b:.4f})"
            out.append(text)
    if "tscd_stage" in per_image:
        for n in (2, 4, 8):
            if n in per_image["tscd_stage"] and n in per_image.get("tscd", {}):
                v = verdict(per_image["tscd_stage"][n], per_image["tscd"][n])
                a, b = mean(per_image["tscd_stage"][n]), mean(per_image["tscd"][n])
                word = {"yes": "yes", "no": "no", "tie": "no, a tie within noise"}[v]
                out.append(f"TSCD stage k={n} beats the final TSCD student at {n} steps: {word} ({a:.4f} vs {b:.4f})")
    return out


# --------------------------------------------------------------------------------------------- images


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def make_grid(rows: list[tuple[str, np.ndarray]], scale: int = 4, label_width: int = 210) -> Image.Image:
    """One row per (label, ``[cols, H, W, 3]`` uint8 images); same column = same noise and class."""
    cols, h, w = rows[0][1].shape[:3]
    cell_h, cell_w, pad = h * scale, w * scale, 2
    img = Image.new("RGB", (label_width + cols * (cell_w + pad), len(rows) * (cell_h + pad)), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = _font(14)
    for r, (label, images) in enumerate(rows):
        y = r * (cell_h + pad)
        draw.text((6, y + cell_h // 2 - 8), label, fill=(0, 0, 0), font=font)
        for c in range(cols):
            tile = Image.fromarray(images[c]).resize((cell_w, cell_h), Image.Resampling.NEAREST)
            img.paste(tile, (label_width + c * (cell_w + pad), y))
    return img


def png_base64(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average (window clipped at the start)."""
    arr = np.asarray(values, dtype=np.float64)
    if len(arr) == 0:
        return []
    csum = np.concatenate([[0.0], np.cumsum(arr)])
    idx = np.arange(1, len(arr) + 1)
    lo = np.maximum(0, idx - window)
    return list((csum[idx] - csum[lo]) / (idx - lo))


def svg_loss_curves(
    series: dict[str, Sequence[float]],
    markers: dict[str, Sequence[int]] | None = None,
    title: str = "distillation loss (moving average, log scale)",
    width: int = 640,
    height: int = 260,
) -> str:
    """A self-contained SVG line chart (log-y) of several loss series sharing the x axis (training step)."""
    colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"]
    left, right, top, bottom = 60, 150, 28, 30
    pw, ph = width - left - right, height - top - bottom
    curves = {name: smooth(vals, max(1, len(vals) // 40)) for name, vals in series.items() if len(vals)}
    positive = [v for vals in curves.values() for v in vals if v > 0]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="16" font-size="13">{html.escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>',
    ]
    if positive:
        lo, hi = math.log10(min(positive)), math.log10(max(positive))
        hi = hi if hi > lo else lo + 1
        n_max = max(len(v) for v in curves.values())

        def xy(i: int, v: float) -> tuple[float, float]:
            x = left + pw * i / max(1, n_max - 1)
            y = top + ph * (hi - math.log10(max(v, 10**lo))) / (hi - lo)
            return x, y

        for dec in range(math.floor(lo), math.ceil(hi) + 1):
            if lo <= dec <= hi:
                _, y = xy(0, 10**dec)
                parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
                parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">1e{dec}</text>')
        parts.append(
            f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle">training step (of {n_max})</text>'
        )
        for j, (name, vals) in enumerate(curves.items()):
            color = colors[j % len(colors)]
            pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in enumerate(vals)))
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>')
            parts.append(f'<text x="{left + pw + 8}" y="{top + 14 + 16 * j}" fill="{color}">{html.escape(name)}</text>')
            for m in (markers or {}).get(name, []):
                if 0 < m < n_max:
                    x, _ = xy(m, 1.0)
                    parts.append(
                        f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" stroke="{color}" stroke-dasharray="3,3" opacity="0.6"/>'
                    )
    parts.append("</svg>")
    return "\n".join(parts)


def html_report(
    *,
    title: str,
    table: str,
    verdicts: list[str],
    grid_png_b64: str,
    grid_caption: str,
    svgs: list[str],
    settings: dict[str, object],
    notes: list[str],
) -> str:
    """A single self-contained HTML page (images inline)."""
    settings_rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in settings.items()
    )
    verdict_items = "".join(f"<li>{html.escape(v)}</li>" for v in verdicts)
    note_items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}
pre{{background:#f6f6f6;padding:1em;overflow-x:auto}} img{{image-rendering:pixelated;max-width:100%}}
td{{padding:2px 10px;border-bottom:1px solid #eee}}</style></head><body>
<h1>{html.escape(title)}</h1>
<h2>Error to the teacher's many-step result (lower is better)</h2>
<pre>{html.escape(table)}</pre>
<h2>Verdicts (computed from the numbers, paired over the same noises, 2 standard errors)</h2>
<ul>{verdict_items}</ul>
<h2>Samples</h2>
<p>{html.escape(grid_caption)}</p>
<img src="data:image/png;base64,{grid_png_b64}" alt="sample grid">
<h2>Loss curves</h2>
{"".join(svgs)}
<h2>How this was measured</h2>
<ul>{note_items}</ul>
<h2>Settings</h2>
<table>{settings_rows}</table>
</body></html>
"""
