"""Per-stage sample grids: the student at 1, 2, 4 and 8 steps."""

from __future__ import annotations

import pathlib
from typing import Any

import torch

from hypersd import tscd
from hypersd.schedules import trailing_timesteps

from .cache import CachedData, vae_factor
from .export import atomic_write
from .models import SDModel, sdxl_time_ids, unet_eps


@torch.no_grad()
def student_sample(unet: Any, cond: dict, noise: torch.Tensor, steps: int, acp: torch.Tensor) -> torch.Tensor:
    """Few-step consistency sampling on trailing timesteps (TCD with gamma 0 = DDIM to x0 and back)."""
    x = noise
    ts = trailing_timesteps(steps)
    for i, t in enumerate(ts):
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        eps = unet_eps(unet, x, tt, cond)
        t_next = ts[i + 1] if i + 1 < len(ts) else -1
        x = tscd.ddim_step(x, eps, tt, t_next, acp)
    return x


@torch.no_grad()
def save_sample_grid(
    model: SDModel, unet: Any, cache: CachedData, path: pathlib.Path, acp: torch.Tensor, device: Any, cfg: Any
) -> None:
    """Rows: sample prompts; columns: the student at 1, 2, 4 and 8 steps from the same noise."""
    import numpy as np
    from PIL import Image

    res = int(cfg.resolution)
    size = res // vae_factor(model)
    n = len(cache.sample_prompts)
    gen = torch.Generator().manual_seed(cfg.sample_seed)
    noise = torch.randn((n, model.unet.config.in_channels, size, size), generator=gen).to(device)
    cond = {k: v.to(device) for k, v in cache.sample_cond.items()}
    if model.base == "sdxl":
        cond["time_ids"] = sdxl_time_ids((res, res), (0, 0), (res, res))[None].expand(n, -1).to(device)
    model.vae.to(device)
    tiles = []
    for steps in (1, 2, 4, 8):
        latents = student_sample(unet, cond, noise, steps, acp)
        vae_dtype = next(model.vae.parameters()).dtype
        images = model.vae.decode((latents / model.vae_scale).to(vae_dtype)).sample.float().clamp(-1, 1)
        tiles.append(((images + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy())
    model.vae.to("cpu")
    h, w = tiles[0].shape[1:3]
    grid = np.zeros((n * h, len(tiles) * w, 3), dtype=np.uint8)
    for col, block in enumerate(tiles):
        for row in range(n):
            grid[row * h : (row + 1) * h, col * w : (col + 1) * w] = block[row]
    atomic_write(path, lambda tmp: Image.fromarray(grid).save(tmp, format="PNG"))
