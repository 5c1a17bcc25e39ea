"""Views of the one UNet: the frozen teacher (LoRA off), the EMA target (EMA weights swapped in), a second adapter
(the fake score of score distillation), and the frozen-teacher features the adversarial head looks at."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from .models import unet_eps


@contextlib.contextmanager
def adapters_disabled(unet: Any) -> Iterator[None]:
    """Run the UNet as the frozen teacher. Flips peft's per-layer flag only: peft's own ``disable_adapters``
    also sets requires_grad=False on the LoRA weights, which would touch the student's autograd leaves."""
    from .lora import _tuner_layers

    layers = _tuner_layers(unet)
    for layer in layers:
        layer._disable_adapters = True
    try:
        yield
    finally:
        for layer in layers:
            layer._disable_adapters = False


@contextlib.contextmanager
def active_adapter(unet: Any, name: str) -> Iterator[None]:
    """Run the UNet with the LoRA adapter ``name`` (e.g. the fake score) instead of the student's, then switch back."""
    from .lora import ADAPTER_NAME, _activate

    _activate(unet, name)
    try:
        yield
    finally:
        _activate(unet, ADAPTER_NAME)


@contextlib.contextmanager
@torch.no_grad()
def merged_adapter(unet: Any, name: str | None = None) -> Iterator[None]:
    """Fold the adapter ``name`` (default: the student's) into the base weights while sampling, so that the UNet
    runs at the plain model's speed (peft's per-layer LoRA path doubles a small UNet's time). The base weights are
    put back exactly from copies kept on the CPU, not by subtracting (which drifts in half precision)."""
    from .lora import ADAPTER_NAME, _tuner_layers

    name = name or ADAPTER_NAME
    layers = [m for m in _tuner_layers(unet) if name in getattr(m, "lora_A", {})]
    saved = [layer.get_base_layer().weight.detach().to("cpu", copy=True) for layer in layers]
    for layer in layers:
        layer.merge(adapter_names=[name])
    try:
        yield
    finally:
        for layer, weight in zip(layers, saved, strict=True):
            layer.get_base_layer().weight.copy_(weight)
            layer.merged_adapters.clear()


@contextlib.contextmanager
@torch.no_grad()
def swapped_weights(params: list[torch.Tensor], replacement: list[torch.Tensor]) -> Iterator[None]:
    """Temporarily copy ``replacement`` into ``params`` (the EMA target view of the student)."""
    saved = [p.detach().clone() for p in params]
    for p, r in zip(params, replacement, strict=True):
        p.copy_(r)
    try:
        yield
    finally:
        for p, s in zip(params, saved, strict=True):
            p.copy_(s)


@contextlib.contextmanager
def _no_gradient_checkpointing(unet: Any) -> Iterator[None]:
    """Checkpointed blocks recompute during backward, when the LoRA is switched on again: the recomputed graph
    would differ from the teacher's. The teacher's feature pass (down blocks only) runs without checkpointing."""
    flagged = [m for m in unet.modules() if getattr(m, "gradient_checkpointing", False)]
    for module in flagged:
        module.gradient_checkpointing = False
    try:
        yield
    finally:
        for module in flagged:
            module.gradient_checkpointing = True


class _StopForward(Exception):
    def __init__(self, value: torch.Tensor):
        self.value = value


def teacher_mid_features(unet: Any, x: torch.Tensor, t: torch.Tensor, cond: dict) -> torch.Tensor:
    """Frozen-teacher mid-block features of x at t (the forward stops after the mid block)."""

    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        raise _StopForward(output[0] if isinstance(output, tuple) else output)

    handle = unet.mid_block.register_forward_hook(hook)
    try:
        with adapters_disabled(unet), _no_gradient_checkpointing(unet):
            unet_eps(unet, x, t, cond)
    except _StopForward as stop:
        return stop.value.float()
    finally:
        handle.remove()
    raise RuntimeError("Hyper-SD: the UNet has no mid block to take discriminator features from")


class Discriminator(torch.nn.Module):
    """A small head on teacher mid-block features (PCM / SDXL-Lightning style: no extra backbone)."""

    def __init__(self, channels: int, hidden: int = 128):
        super().__init__()
        groups = 32 if channels % 32 == 0 and hidden % 32 == 0 else 1
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(channels, hidden, 3, padding=1),
            torch.nn.GroupNorm(groups, hidden),
            torch.nn.SiLU(),
            torch.nn.Conv2d(hidden, hidden, 3, padding=1),
            torch.nn.GroupNorm(groups, hidden),
            torch.nn.SiLU(),
            torch.nn.Conv2d(hidden, 1, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).mean(dim=(1, 2, 3))
