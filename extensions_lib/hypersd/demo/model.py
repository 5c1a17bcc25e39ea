"""The demo's tiny class-conditional eps-prediction UNet, and LoRA adapters applied functionally.

The student is the teacher plus a low-rank adapter on every conv and linear weight (as the real
product trains a LoRA on the SD UNet); the teacher is the same network with the adapter off, so
no second copy of the weights exists.  The adapter is merged into the weights per call with
``torch.func.functional_call`` — cheap at this size and exact.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call


@dataclass(frozen=True)
class UNetConfig:
    channels: int = 32
    emb_dim: int = 64
    num_classes: int = 10  # label num_classes is the "null" (unconditional) class
    image_channels: int = 3

    def to_metadata(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> UNetConfig:
        return cls(**{k: int(meta[k]) for k in asdict(cls()) if k in meta})


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (as in DDPM / SD)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(8, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class TinyUNet(nn.Module):
    """16x16 -> 8x8 -> 4x4 and back, one ResBlock per level, timestep + class embedding (FiLM)."""

    def __init__(self, config: UNetConfig = UNetConfig()):
        super().__init__()
        self.config = config
        c, e = config.channels, config.emb_dim
        self.time_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.class_emb = nn.Embedding(config.num_classes + 1, e)
        self.conv_in = nn.Conv2d(config.image_channels, c, 3, padding=1)
        self.down1 = ResBlock(c, c, e)
        self.pool1 = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.down2 = ResBlock(2 * c, 2 * c, e)
        self.pool2 = nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1)
        self.mid = ResBlock(2 * c, 2 * c, e)
        self.up2 = ResBlock(4 * c, 2 * c, e)
        self.up1 = ResBlock(3 * c, c, e)
        self.norm_out = nn.GroupNorm(8, c)
        self.conv_out = nn.Conv2d(c, config.image_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.config.emb_dim)) + self.class_emb(label)
        emb = F.silu(emb)
        h1 = self.down1(self.conv_in(x), emb)  # 16x16, c
        h2 = self.down2(self.pool1(h1), emb)  # 8x8, 2c
        h = self.mid(self.pool2(h2), emb)  # 4x4, 2c
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.up2(torch.cat([h, h2], dim=1), emb)  # 8x8
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.up1(torch.cat([h, h1], dim=1), emb)  # 16x16
        return self.conv_out(F.silu(self.norm_out(h)))


def lora_targets(net: nn.Module) -> dict[str, torch.Tensor]:
    """The weights that get an adapter: every conv and linear weight (not norms, biases, embeddings)."""
    return {
        f"{name}.weight": mod.weight for name, mod in net.named_modules() if isinstance(mod, (nn.Conv2d, nn.Linear))
    }


def init_lora(net: nn.Module, rank: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """LoRA factors per target weight: ``down [r, fan_in]`` small random, ``up [out, r]`` zero (student = teacher).

    Returned as a flat dict ``{"<weight>.lora_down": ..., "<weight>.lora_up": ...}`` of leaf tensors
    with ``requires_grad=True`` (optimise these; copy them for the EMA target).
    """
    factors: dict[str, torch.Tensor] = {}
    for name, w in lora_targets(net).items():
        out_features, fan_in = w.shape[0], w[0].numel()
        r = min(rank, out_features, fan_in)
        down = torch.randn(r, fan_in, generator=generator) / math.sqrt(fan_in)
        factors[f"{name}.lora_down"] = down.requires_grad_(True)
        factors[f"{name}.lora_up"] = torch.zeros(out_features, r, requires_grad=True)
    return factors


class LoRAModel:
    """``(x, t, label) -> eps`` of ``net`` with LoRA ``factors`` merged (scale alpha/rank = 1); factors None = teacher."""

    def __init__(self, net: nn.Module, factors: dict[str, torch.Tensor] | None):
        self.net = net
        self.factors = factors

    def __call__(self, x: torch.Tensor, t: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        if not self.factors:
            return self.net(x, t, label)
        params = {}
        for name, w in lora_targets(self.net).items():
            delta = self.factors[f"{name}.lora_up"] @ self.factors[f"{name}.lora_down"]
            params[name] = w + delta.reshape(w.shape)
        return functional_call(self.net, params, (x, t, label), strict=False)


def save_unet(net: TinyUNet, path, extra_metadata: dict[str, str] | None = None) -> None:
    """Write the weights as fp16 safetensors (keeps the shipped teacher < 1 MB), atomically."""
    import os

    from safetensors.torch import save_file

    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in net.state_dict().items()}
    meta = {"format": "pt", "hypersd_demo_unet": "1", **net.config.to_metadata(), **(extra_metadata or {})}
    tmp = f"{path}.tmp"
    save_file(tensors, tmp, metadata=meta)
    os.replace(tmp, path)


def load_unet(path) -> tuple[TinyUNet, dict[str, str]]:
    """The frozen fp32 network stored by :func:`save_unet`, and the file's metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    if meta.get("hypersd_demo_unet") != "1":
        raise ValueError(
            f"Hyper-SD: {path} is not a demo teacher; rebuild it with `python -m hypersd demo --train-teacher`"
        )
    net = TinyUNet(UNetConfig.from_metadata(meta))
    net.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return net.eval().requires_grad_(False), meta
