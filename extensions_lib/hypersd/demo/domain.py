"""The demo's synthetic image domain: coloured shapes with real text captions, drawn procedurally with PIL.

No files and no downloads: every image is rendered from a seed. A caption names the shape and the colour
("a red triangle"); position, size, rotation, shade and background vary freely, so the conditional
distribution is multi-modal (few-step teachers blur it, which is what distillation has to fix) and both the
text encoder and classifier-free guidance matter. The shipped classifier (``hypersd.demo.classifier``) reads
shape and colour back from an image: that is the demo's prompt-fidelity score and its reward model.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "ring", "plus", "cross", "diamond", "bars")
#: colour name -> hue; saturation and value vary within a colour
COLORS = {"red": 0.0, "orange": 0.075, "yellow": 0.155, "green": 0.33, "blue": 0.62, "purple": 0.8}
COLOR_NAMES = tuple(COLORS)
TEMPLATES = ("a {color} {shape}", "{color} {shape}", "a {shape}, {color}", "a picture of a {color} {shape}")
IMAGE_SIZE = 32
_SUPERSAMPLE = 4  # draw at 4x, then box-filter down: anti-aliased edges


@dataclass(frozen=True)
class Label:
    shape: int
    color: int

    def caption(self, template: int = 0) -> str:
        return TEMPLATES[template % len(TEMPLATES)].format(color=COLOR_NAMES[self.color], shape=SHAPES[self.shape])


def all_labels() -> list[Label]:
    return [Label(s, c) for c in range(len(COLOR_NAMES)) for s in range(len(SHAPES))]


def parse_caption(caption: str) -> Label | None:
    """The shape and colour a caption names, or None when it names not exactly one of each."""
    words = caption.lower().replace(",", " ").split()
    shapes = [i for i, s in enumerate(SHAPES) if s in words]
    colors = [i for i, c in enumerate(COLOR_NAMES) if c in words]
    if len(shapes) != 1 or len(colors) != 1:
        return None
    return Label(shapes[0], colors[0])


def _rotate(points: list[tuple[float, float]], cx: float, cy: float, angle: float) -> list[tuple[float, float]]:
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in points]


def _bar(cx: float, cy: float, length: float, width: float) -> list[tuple[float, float]]:
    return [(cx - length, cy - width / 2), (cx + length, cy - width / 2), (cx + length, cy + width / 2), (cx - length, cy + width / 2)]  # fmt: skip


def _draw_shape(draw: ImageDraw.ImageDraw, shape: int, cx: float, cy: float, r: float, angle: float, fg) -> None:
    w = max(2.0, r * 0.42)  # stroke width
    name = SHAPES[shape]
    if name == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fg)
    elif name == "square":
        draw.polygon(
            _rotate([(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)], cx, cy, angle), fill=fg
        )
    elif name == "triangle":
        pts = [(cx, cy - r), (cx + r * 0.95, cy + r * 0.8), (cx - r * 0.95, cy + r * 0.8)]
        draw.polygon(_rotate(pts, cx, cy, angle), fill=fg)
    elif name == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fg, width=int(w))
    elif name in ("plus", "cross"):
        a = angle + (math.pi / 4 if name == "cross" else 0.0)
        for arm in (0.0, math.pi / 2):
            draw.polygon(_rotate(_bar(cx, cy, r, w), cx, cy, a + arm), fill=fg)
    elif name == "diamond":
        draw.polygon(
            _rotate([(cx, cy - r), (cx + r * 0.8, cy), (cx, cy + r), (cx - r * 0.8, cy)], cx, cy, angle * 0.5), fill=fg
        )
    elif name == "bars":
        bar = r * 0.36
        for j in (-1, 0, 1):
            draw.polygon(_rotate(_bar(cx, cy + j * bar * 2.0, r, bar), cx, cy, angle * 0.5), fill=fg)
    else:  # pragma: no cover - SHAPES and this function change together
        raise ValueError(f"Hyper-SD: no drawing for the demo shape {name!r}")


def render(label: Label, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """One ``size x size`` RGB image (uint8) of ``label`` with random shade, position, size, rotation, background."""
    if not (0 <= label.shape < len(SHAPES) and 0 <= label.color < len(COLOR_NAMES)):
        raise ValueError(
            f"Hyper-SD: no demo label {label} (shapes 0-{len(SHAPES) - 1}, colours 0-{len(COLOR_NAMES) - 1})"
        )
    big = size * _SUPERSAMPLE
    hue = (COLORS[COLOR_NAMES[label.color]] + rng.uniform(-0.02, 0.02)) % 1.0
    fg = tuple(int(255 * v) for v in colorsys.hsv_to_rgb(hue, rng.uniform(0.75, 1.0), rng.uniform(0.8, 1.0)))
    bg = tuple(int(255 * v) for v in colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.3), rng.uniform(0.08, 0.3)))
    img = Image.new("RGB", (big, big), bg)
    draw = ImageDraw.Draw(img)
    cx = big / 2 + rng.uniform(-0.12, 0.12) * big
    cy = big / 2 + rng.uniform(-0.12, 0.12) * big
    r = big * rng.uniform(0.22, 0.34)
    _draw_shape(draw, label.shape, cx, cy, r, rng.uniform(-0.35, 0.35), fg)
    return np.asarray(img.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


def make_dataset(count: int, seed: int, size: int = IMAGE_SIZE) -> tuple[torch.Tensor, list[Label], list[str]]:
    """``count`` images as float32 ``[count, 3, size, size]`` in [-1, 1], their labels (balanced) and captions."""
    rng = np.random.default_rng(seed)
    labels_all = all_labels()
    order = np.arange(count) % len(labels_all)
    rng.shuffle(order)
    labels = [labels_all[i] for i in order]
    images = np.stack([render(lab, rng, size) for lab in labels])
    captions = [lab.caption(int(rng.integers(len(TEMPLATES)))) for lab in labels]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return x.contiguous(), labels, captions


def label_tensors(labels: list[Label]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([lab.shape for lab in labels]), torch.tensor([lab.color for lab in labels])


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[B, 3, H, W]`` in [-1, 1] -> ``[B, H, W, 3]`` uint8 (clamped)."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
