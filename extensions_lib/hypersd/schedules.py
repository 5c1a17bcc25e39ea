"""Timestep schedules for few-step models, and their conversion into k-diffusion sigmas.

All functions are pure.  Timesteps are integers on the model's training grid
(0 … train_steps-1); sigmas are k-diffusion's variance-exploding noise levels
``sigma_t = sqrt((1 - alphas_cumprod[t]) / alphas_cumprod[t])``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

#: The SDXL 1-step UNet of Hyper-SD is trained for this single timestep (LCM scheduler, ``timesteps=[800]``).
HYPER_1STEP_TIMESTEP = 800

# SD1.5 / SDXL training noise schedule ("scaled_linear" in diffusers, "linear" in ldm).
SD_BETA_START = 0.00085
SD_BETA_END = 0.012


def _check_steps(n: int, limit: int, what: str) -> None:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        raise TypeError(f"{what}: the number of steps must be an int, got {n!r}")
    if n < 1:
        raise ValueError(f"{what}: the number of steps must be at least 1, got {n}")
    if n > limit:
        raise ValueError(f"{what}: {n} steps is more than the {limit} this schedule allows")


def trailing_timesteps(n: int, train_steps: int = 1000) -> list[int]:
    """Timesteps of diffusers' ``timestep_spacing="trailing"`` (n=4 → [999, 749, 499, 249]).

    The grid ends at the last training timestep, which is what Hyper-SD, SDXL-Lightning and
    DMD2 were distilled on (WebUI's own DDIM schedule starts at 751 for 4 steps instead).
    """
    _check_steps(n, train_steps, "trailing schedule")
    step_ratio = train_steps / n
    # Same arithmetic as diffusers (float arange, then round), so uneven n agree to the step.
    ts = np.round(np.arange(train_steps, 0, -step_ratio)).astype(np.int64) - 1
    return [int(t) for t in ts]


def tcd_timesteps(n: int, original_steps: int = 50, train_steps: int = 1000) -> list[int]:
    """Timesteps of diffusers' ``TCDScheduler(original_inference_steps=original_steps).set_timesteps(n)``.

    TCD samples from a coarse "original" grid of ``original_steps`` points (k·j − 1 with
    k = train_steps // original_steps), taking n evenly spaced indices of it (n=4 → [999, 759, 499, 259]).
    """
    if original_steps < 1 or original_steps > train_steps:
        raise ValueError(f"TCD schedule: original_steps must be in 1…{train_steps}, got {original_steps}")
    _check_steps(n, original_steps, "TCD schedule")
    k = train_steps // original_steps
    origin = (np.arange(1, original_steps + 1) * k - 1)[::-1]
    idx = np.floor(np.linspace(0, len(origin), num=n, endpoint=False)).astype(np.int64)
    return [int(t) for t in origin[idx]]


def hyper_1step_timesteps(n: int = 1, start: int = HYPER_1STEP_TIMESTEP) -> list[int]:
    """The schedule of the Hyper-SDXL 1-step UNet: one step from timestep 800 (n=1 → [800]).

    The official recipe is exactly one step (diffusers' LCM scheduler with ``timesteps=[800]``).
    WebUI's contract is n+1 sigmas for n steps (img2img and hires fix slice the list by step
    count), so for n > 1 the grid continues evenly below 800 (n=4 → [800, 600, 400, 200]):
    the first step is the official one and later steps are consistency re-noising steps.
    """
    _check_steps(n, start, "1-step schedule")
    return [round(start * (n - i) / n) for i in range(n)]


def alphas_cumprod(
    train_steps: int = 1000, beta_start: float = SD_BETA_START, beta_end: float = SD_BETA_END
) -> torch.Tensor:
    """ᾱ_t of SD1.5/SDXL's "scaled linear" schedule, float64 (diffusers' ``scaled_linear``)."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, train_steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def sigma_table(acp: torch.Tensor) -> torch.Tensor:
    """k-diffusion sigmas for every training timestep, from ᾱ_t."""
    return ((1 - acp) / acp) ** 0.5


def timesteps_to_sigmas(timesteps: Sequence[int], sigmas: torch.Tensor) -> torch.Tensor:
    """Descending sigmas ending in 0, as WebUI's schedules return them, from a timestep list.

    ``sigmas`` is the model's table indexed by timestep (``inner_model.sigmas`` in WebUI).
    The result has ``len(timesteps) + 1`` entries, on the CPU, in the table's dtype.
    """
    ts = [int(t) for t in timesteps]
    if not ts:
        raise ValueError("timesteps_to_sigmas: empty timestep list")
    if any(t < 0 or t >= len(sigmas) for t in ts):
        raise ValueError(f"timesteps_to_sigmas: timesteps {ts} fall outside the model's table of {len(sigmas)}")
    if any(a <= b for a, b in zip(ts, ts[1:], strict=False)):
        raise ValueError(f"timesteps_to_sigmas: timesteps must be strictly descending, got {ts}")
    table = sigmas.detach().cpu()
    out = torch.cat([table[torch.tensor(ts)], table.new_zeros(1)])
    return out
