"""The demo's built-in image set: class-conditional coloured glyphs, drawn procedurally with PIL.

No files and no downloads: every image is rendered from a seed.  Each class is a shape; colour,
position, size and rotation are random within the class, so the conditional distribution is
multi-modal (few-step teachers blur it, which is what distillation has to fix).
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
import torch
from PIL import Image, ImageDraw

CLASS_NAMES = ("disc", "square", "triangle", "ring", "plus", "cross", "h-bars", "v-bars", "diamond", "dots")
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SIZE = 16
_SUPERSAMPLE = 4  # draw at 4x, then box-filter down: anti-aliased edges


def _rotate(points: list[tuple[float, float]], cx: float, cy: float, angle: float) -> list[tuple[float, float]]:
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in points]


def render_glyph(label: int, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """One ``size x size`` RGB image (uint8) of class ``label`` with random colour, jitter and size."""
    big = size * _SUPERSAMPLE
    hue = rng.random()
    fg = tuple(int(255 * v) for v in colorsys.hsv_to_rgb(hue, 0.55 + 0.45 * rng.random(), 0.75 + 0.25 * rng.random()))
    bg_hue = (hue + 0.35 + 0.3 * rng.random()) % 1.0
    bg = tuple(int(255 * v) for v in colorsys.hsv_to_rgb(bg_hue, 0.6 * rng.random(), 0.1 + 0.25 * rng.random()))
    img = Image.new("RGB", (big, big), bg)
    draw = ImageDraw.Draw(img)
    cx = big / 2 + rng.uniform(-2, 2) * _SUPERSAMPLE
    cy = big / 2 + rng.uniform(-2, 2) * _SUPERSAMPLE
    r = big * rng.uniform(0.26, 0.38)
    angle = rng.uniform(-0.35, 0.35)
    w = max(2.0, r * 0.42)  # stroke width
    box = (cx - r, cy - r, cx + r, cy + r)
    if label == 0:
        draw.ellipse(box, fill=fg)
    elif label == 1:
        draw.polygon(
            _rotate([(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)], cx, cy, angle), fill=fg
        )
    elif label == 2:
        pts = [(cx, cy - r), (cx + r * 0.95, cy + r * 0.8), (cx - r * 0.95, cy + r * 0.8)]
        draw.polygon(_rotate(pts, cx, cy, angle), fill=fg)
    elif label == 3:
        draw.ellipse(box, outline=fg, width=int(w))
    elif label in (4, 5):
        a = angle + (math.pi / 4 if label == 5 else 0.0)
        for arm in (0.0, math.pi / 2):
            pts = [(cx - r, cy - w / 2), (cx + r, cy - w / 2), (cx + r, cy + w / 2), (cx - r, cy + w / 2)]
            draw.polygon(_rotate(pts, cx, cy, a + arm), fill=fg)
    elif label in (6, 7):
        bar = r * 0.36
        for j in (-1, 0, 1):
            off = j * bar * 2.0
            if label == 6:
                pts = [
                    (cx - r, cy + off - bar / 2),
                    (cx + r, cy + off - bar / 2),
                    (cx + r, cy + off + bar / 2),
                    (cx - r, cy + off + bar / 2),
                ]
            else:
                pts = [
                    (cx + off - bar / 2, cy - r),
                    (cx + off + bar / 2, cy - r),
                    (cx + off + bar / 2, cy + r),
                    (cx + off - bar / 2, cy + r),
                ]
            draw.polygon(_rotate(pts, cx, cy, angle * 0.5), fill=fg)
    elif label == 8:
        draw.polygon(_rotate([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], cx, cy, angle * 0.5), fill=fg)
    elif label == 9:
        d = r * 0.55
        for dx, dy in ((-d, -d), (d, -d), (-d, d), (d, d)):
            rr = r * 0.32
            draw.ellipse((cx + dx - rr, cy + dy - rr, cx + dx + rr, cy + dy + rr), fill=fg)
    else:
        raise ValueError(f"Hyper-SD: demo class {label} does not exist (0…{NUM_CLASSES - 1})")
    img = img.resize((size, size), Image.Resampling.BOX)
    return np.asarray(img, dtype=np.uint8)


def make_dataset(count: int, seed: int, size: int = IMAGE_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` images as float32 ``[count, 3, size, size]`` in [-1, 1], and their int64 labels (balanced)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % NUM_CLASSES
    rng.shuffle(labels)
    images = np.stack([render_glyph(int(lab), rng, size) for lab in labels])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return x.contiguous(), torch.from_numpy(labels).long()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[B, 3, H, W]`` in [-1, 1] -> ``[B, H, W, 3]`` uint8 (clamped)."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
