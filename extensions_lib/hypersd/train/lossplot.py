"""The Train tab's loss plot, drawn with PIL (WebUI's venv is not assumed to have matplotlib).

* raw loss: a thin light line; a smoothed loss on top: a thicker dark line. The smoothing is an exponential moving
  average, bias-corrected like Adam's moments (the first points are not pulled towards zero), restarted at every
  stage (the loss level jumps when k changes, and an average across the jump would lag behind it). Its decay
  :func:`smoothing_for` makes the average span about 2% of the points, at least 10: a short run stays detailed,
  a long one readable. On a log axis the average is taken of log10(loss) (a geometric mean).
* the y axis is logarithmic when the finite losses are all above 0 and span more than ``LOG_SPAN``×.
* stage boundaries: dashed grey vertical lines halfway between a stage's last step and the next stage's first;
  each stage is labelled ``k=8`` where it starts.
* non-finite losses (NaN, inf) are skipped and counted in the title.

Text is ASCII only: WebUI 1.10 ships Pillow 9.5, whose default font is a Latin-1 bitmap font.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

LOG_SPAN = 20.0
BACKGROUND = (255, 255, 255)
AXIS = (60, 60, 60)
GRID = (236, 236, 236)
RAW = (170, 200, 235)
SMOOTH = (20, 70, 160)
STAGE = (150, 150, 150)
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 16, 22, 34
Y_PAD = 0.05  # of the value range, above and below: the lines never run along the frame


def smoothing_for(n_points: int) -> float:
    """EMA decay whose time constant is about 2% of ``n_points``, at least 10 points."""
    return 1.0 - 1.0 / max(10.0, n_points / 50)


def smooth(values: Sequence[float], beta: float = 0.9) -> list[float]:
    """Bias-corrected exponential moving average: avg_i = β·avg_(i-1) + (1-β)·v_i, reported as avg_i / (1-β^i)."""
    out, avg = [], 0.0
    for i, value in enumerate(values, start=1):
        avg = beta * avg + (1 - beta) * value
        out.append(avg / (1 - beta**i))
    return out


def use_log_scale(losses: Sequence[float]) -> bool:
    finite = [v for v in losses if math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > LOG_SPAN


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round values (1, 2 or 5 × 10^n apart) inside [low, high], about ``count`` of them."""
    if not high > low:
        return [low]
    raw = (high - low) / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    spacing = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / spacing - 1e-9)
    ticks = []
    value = first * spacing
    while value <= high + spacing * 1e-9:
        ticks.append(round(value, 12))
        first += 1
        value = first * spacing
    return ticks


def _log_ticks(low: float, high: float) -> list[float]:
    """Powers of ten in [low, high] (log10 space), with 2× and 5× between them when there are fewer than three."""
    decades = range(math.floor(low), math.ceil(high) + 1)
    for multipliers in ((1,), (1, 2, 5)):
        ticks = [math.log10(m * 10.0**e) for e in decades for m in multipliers]
        ticks = [t for t in ticks if low - 1e-9 <= t <= high + 1e-9]
        if len(ticks) >= 3:
            return ticks
    return ticks


@dataclass(frozen=True)
class PlotAxes:
    """Where steps and losses land on the image; the plot box is [left, right] × [top, bottom] in pixels."""

    left: int
    top: int
    right: int
    bottom: int
    step_min: float
    step_max: float
    value_min: float  # in plotted units: log10(loss) on a log axis
    value_max: float
    log_scale: bool

    def value(self, loss: float) -> float:
        return math.log10(loss) if self.log_scale else loss

    def x(self, step: float) -> float:
        return self.left + (step - self.step_min) / (self.step_max - self.step_min) * (self.right - self.left)

    def y_of_value(self, value: float) -> float:
        return self.bottom - (value - self.value_min) / (self.value_max - self.value_min) * (self.bottom - self.top)

    def y(self, loss: float) -> float:
        return self.y_of_value(self.value(loss))


def make_axes(points: Sequence[tuple[int, float, int]], width: int = 640, height: int = 260) -> PlotAxes | None:
    """The axes for the finite losses of ``points``; None when there are none."""
    good = [(s, v) for s, v, _ in points if math.isfinite(v)]
    if not good:
        return None
    log_scale = use_log_scale([v for _, v in good])
    steps = [s for s, _ in good]
    step_min, step_max = min(steps), max(steps)
    if step_max == step_min:
        step_max = step_min + 1
    values = [math.log10(v) if log_scale else v for _, v in good]
    low, high = min(values), max(values)
    if high == low:
        low, high = low - 0.5 * (abs(low) or 1), high + 0.5 * (abs(high) or 1)
    pad = (high - low) * Y_PAD
    return PlotAxes(
        left=MARGIN_LEFT,
        top=MARGIN_TOP,
        right=width - MARGIN_RIGHT,
        bottom=height - MARGIN_BOTTOM,
        step_min=step_min,
        step_max=step_max,
        value_min=low - pad,
        value_max=high + pad,
        log_scale=log_scale,
    )


def smoothed_points(points: Sequence[tuple[int, float, int]], log_scale: bool) -> list[list[tuple[int, float]]]:
    """The smoothed curve as one list of (step, loss) per run of points of the same stage (finite losses only)."""
    runs: list[list[tuple[int, float]]] = []
    current_k: int | str | None = None
    for step, loss, k in points:
        if not math.isfinite(loss) or (log_scale and loss <= 0):
            continue
        if k != current_k or not runs:
            runs.append([])
            current_k = k
        runs[-1].append((step, loss))
    beta = smoothing_for(sum(len(run) for run in runs))
    curves = []
    for run in runs:
        values = [math.log10(v) if log_scale else v for _, v in run]
        averaged = smooth(values, beta)
        curves.append([(s, 10**a if log_scale else a) for (s, _), a in zip(run, averaged, strict=True)])
    return curves


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def _tick_label(value: float) -> str:
    return f"{value:.3g}"


def _text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font, fill, place: str = "lt") -> None:
    """Text placed by its ink box: place = horizontal l/m/r + vertical t/m/b (not ``anchor``: Pillow 9.5's bitmap
    default font does not support it)."""
    left, top, right, bottom = font.getbbox(text)
    x = xy[0] - left - {"l": 0, "m": (right - left) / 2, "r": right - left}[place[0]]
    y = xy[1] - top - {"t": 0, "m": (bottom - top) / 2, "b": bottom - top}[place[1]]
    draw.text((round(x), round(y)), text, fill=fill, font=font)


def _non_finite(count: int) -> str:
    return f"{count} non-finite value{'' if count == 1 else 's'}"


def _placeholder(width: int, height: int, skipped: int) -> Image.Image:
    img = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(img)
    font = _font()
    lines = ["No loss values yet"] + ([f"({_non_finite(skipped)} skipped)"] if skipped else [])
    for i, text in enumerate(lines):
        _text(draw, (width / 2, height / 2 + 14 * i), text, font, AXIS, "mm")
    return img


def stage_label(stage: int | str) -> str:
    """``k=8`` for a TSCD stage, the stage's name (``dmd``, ``feedback``) for the others."""
    return f"k={stage}" if str(stage).isdigit() else str(stage)


def render_loss_plot(
    points: Sequence[tuple[int, float, int]],
    stage_ends: Sequence[tuple[int, int]] = (),
    width: int = 640,
    height: int = 260,
) -> Image.Image:
    """An RGB image of the loss curve. points: (global step, loss, stage k); stage_ends: (k, global step)."""
    points = sorted(points, key=lambda p: p[0])
    skipped = sum(1 for _, v, _ in points if not math.isfinite(v))
    axes = make_axes(points, width, height)
    if axes is None:
        return _placeholder(width, height, skipped)
    good = [(s, v, k) for s, v, k in points if math.isfinite(v)]
    img = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(img)
    font = _font()
    _draw_axes(draw, axes, font, skipped, height)
    _draw_stages(draw, axes, font, good, stage_ends)
    _draw_curves(draw, axes, good)
    return img


def _draw_axes(draw: ImageDraw.ImageDraw, axes: PlotAxes, font: ImageFont.ImageFont, skipped: int, height: int) -> None:
    """Grid, ticks and labels, the axes, the title (with the count of skipped non-finite losses)."""
    x0, y0, x1, y1 = axes.left, axes.top, axes.right, axes.bottom
    if axes.log_scale:
        y_ticks = _log_ticks(axes.value_min, axes.value_max)
    else:
        y_ticks = nice_ticks(axes.value_min, axes.value_max)
    for t in y_ticks:
        y = axes.y_of_value(t)
        draw.line([(x0 + 1, y), (x1, y)], fill=GRID)
        draw.line([(x0 - 4, y), (x0, y)], fill=AXIS)
        _text(draw, (x0 - 6, y), _tick_label(10**t if axes.log_scale else t), font, AXIS, "rm")
    spacing = nice_ticks(axes.step_min, axes.step_max)
    x_ticks = sorted({int(round(s)) for s in spacing if float(s).is_integer()} or {int(axes.step_min)})
    for step in x_ticks:
        x = axes.x(step)
        draw.line([(x, y1), (x, y1 + 4)], fill=AXIS)
        _text(draw, (x, y1 + 6), str(step), font, AXIS, "mt")
    draw.line([(x0, y0), (x0, y1), (x1, y1)], fill=AXIS, width=1)
    title = "loss (log)" if axes.log_scale else "loss"
    if skipped:
        title += f" - {_non_finite(skipped)} skipped"
    _text(draw, (x0 + 4, 4), title, font, AXIS)
    _text(draw, (x1, height - 2), "step", font, AXIS, "rb")


def _draw_stages(
    draw: ImageDraw.ImageDraw, axes: PlotAxes, font: ImageFont.ImageFont, good: list, stage_ends: Sequence
) -> None:
    """Stage boundaries (dashed), then a label where each stage starts, skipping one that would overlap the last."""
    y0, y1 = axes.top, axes.bottom
    for _, end in stage_ends:
        if axes.step_min <= end < axes.step_max:
            x = round(axes.x(end + 0.5))
            for y in range(y0, y1, 6):
                draw.line([(x, y), (x, min(y + 3, y1))], fill=STAGE)
    label_right = -1.0
    for i, (step, _, k) in enumerate(good):
        if i and good[i - 1][2] == k:
            continue
        x = axes.x(step) + 3
        if x > label_right:
            label = stage_label(k)
            _text(draw, (x, y0 + 2), label, font, STAGE)
            label_right = x + font.getbbox(label)[2] + 4


def _draw_curves(draw: ImageDraw.ImageDraw, axes: PlotAxes, good: list) -> None:
    """The raw loss, then the smoothed curve on top (a dot where a stretch has one point)."""
    raw = [(axes.x(s), axes.y(v)) for s, v, _ in good]
    if len(raw) > 1:
        draw.line(raw, fill=RAW, width=1)
    for curve in smoothed_points(good, axes.log_scale):
        line = [(axes.x(s), axes.y(v)) for s, v in curve]
        if len(line) > 1:
            draw.line(line, fill=SMOOTH, width=3, joint="curve")
        else:
            x, y = line[0]
            draw.ellipse([(x - 2, y - 2), (x + 2, y + 2)], fill=SMOOTH)
