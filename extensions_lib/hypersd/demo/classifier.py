"""The demo's tiny image classifier: reads shape and colour back from a generated image.

Shipped beside the demo teacher and trained on the same renders. It serves three purposes:

* **prompt fidelity**: the share of images whose shape and colour both match their caption;
* **features** for the Fréchet distance between a student's samples and the teacher's (its penultimate layer);
* **reward** for the human-feedback stage: the log-probability of the caption's shape and colour.
"""

from __future__ import annotations

import json
import pathlib

import torch
import torch.nn.functional as F
from torch import nn

from .domain import COLOR_NAMES, SHAPES, Label, label_tensors

CLASSIFIER_FILE = "classifier.safetensors"


class ShapeColorClassifier(nn.Module):
    """32x32 RGB in [-1, 1] -> (shape logits, colour logits); ``features`` is the 128-d penultimate layer."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())

        self.body = nn.Sequential(
            block(3, w), nn.AvgPool2d(2), block(w, 2 * w), nn.AvgPool2d(2), block(2 * w, 2 * w), nn.AvgPool2d(2),
            block(2 * w, 4 * w),
        )  # fmt: skip
        self.shape_head = nn.Linear(4 * w, len(SHAPES))
        self.color_head = nn.Linear(4 * w, len(COLOR_NAMES))
        self.width = width

    def features(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] != 32 or images.shape[-2] != 32:
            images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
        return self.body(images).mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(images)
        return self.shape_head(feats), self.color_head(feats)

    def log_prob(self, images: torch.Tensor, labels: list[Label]) -> torch.Tensor:
        """Per image: log p(caption's shape) + log p(caption's colour) — the demo's reward (differentiable)."""
        shape_logits, color_logits = self(images)
        shapes, colors = (t.to(images.device) for t in label_tensors(labels))
        return (
            shape_logits.log_softmax(-1).gather(1, shapes[:, None])[:, 0]
            + color_logits.log_softmax(-1).gather(1, colors[:, None])[:, 0]
        )

    @torch.no_grad()
    def matches(self, images: torch.Tensor, labels: list[Label]) -> torch.Tensor:
        """Per image: 1.0 when both shape and colour read back as the caption says, else 0.0."""
        shape_logits, color_logits = self(images)
        shapes, colors = (t.to(images.device) for t in label_tensors(labels))
        return ((shape_logits.argmax(-1) == shapes) & (color_logits.argmax(-1) == colors)).float()


def save_classifier(net: ShapeColorClassifier, path: pathlib.Path) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in net.state_dict().items()}
    meta = {
        "hypersd_demo_classifier": "1",
        "width": str(net.width),
        "shapes": json.dumps(SHAPES),
        "colors": json.dumps(COLOR_NAMES),
    }
    save_file(tensors, str(path), metadata=meta)


def load_classifier(path: pathlib.Path) -> ShapeColorClassifier:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        meta = dict(handle.metadata() or {})
    if meta.get("hypersd_demo_classifier") != "1":
        raise ValueError(
            f"Hyper-SD: {path} is not the demo classifier; rebuild it with `python -m hypersd demo --train-teacher`"
        )
    if json.loads(meta["shapes"]) != list(SHAPES) or json.loads(meta["colors"]) != list(COLOR_NAMES):
        raise ValueError(f"Hyper-SD: {path} was trained on other shapes or colours; rebuild it with --train-teacher")
    net = ShapeColorClassifier(int(meta["width"]))
    net.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return net.eval().requires_grad_(False)
