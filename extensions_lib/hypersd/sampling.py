"""The TCD sampler (Trajectory Consistency Distillation, Zheng et al. 2024) as a k-diffusion sampler.

k-diffusion convention: ``model(x, sigma, **extra_args)`` returns the x0 prediction ("denoised")
for the variance-exploding state ``x = x0 + sigma * eps``.  With TCD's gamma (γ, passed as
``eta`` so that WebUI's eta plumbing reaches it) and the next timestep t', the sampler jumps to
the intermediate timestep ``s = floor((1 - γ) · t')`` along the predicted trajectory and then
re-noises forward to t':

    x' = x0̂ + σ_s · ε̂ + sqrt(σ_{t'}² − σ_s²) · z,    ε̂ = (x − x0̂) / σ_t,   z ~ N(0, I)

γ = 0 is deterministic (DDIM-like), γ = 1 is LCM-like (full re-noising).  The last step
(σ_{t'} = 0) returns x0̂.  This is the update of diffusers' ``TCDScheduler.step`` rewritten in
sigma space; the tests check the whole loop against it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import torch

from hypersd.sampler_names import TCD_DEFAULT_GAMMA

NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class DiscreteSchedule(Protocol):
    """What TCD needs from the model's noise schedule (k-diffusion's ``DiscreteSchedule``)."""

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor: ...

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor: ...


#: A timestep this close to an integer is taken to be that integer: sigma→t round trips in
#: float32 land a hair off the grid, and ``floor`` must not turn 759 into 758.
_INTEGER_TOLERANCE = 1e-3


def find_schedule(model: Any) -> DiscreteSchedule:
    """The object with ``sigma_to_t``/``t_to_sigma`` for ``model``: the model itself or one of
    its ``inner_model`` chain (WebUI wraps k-diffusion's denoiser in a CFG denoiser)."""
    seen = 0
    node = model
    while node is not None and seen < 16:
        if hasattr(node, "sigma_to_t") and hasattr(node, "t_to_sigma"):
            return node
        node = getattr(node, "inner_model", None)
        seen += 1
    raise TypeError(
        "Hyper-SD: TCD needs the model's discrete noise schedule (sigma_to_t / t_to_sigma), but neither the model "
        "nor its inner_model chain has one; pass schedule=... (for example k-diffusion's DiscreteSchedule)."
    )


def _as_timestep(t: torch.Tensor) -> float:
    value = float(t)
    nearest = round(value)
    return float(nearest) if abs(value - nearest) < _INTEGER_TOLERANCE else value


def tcd_intermediate_timestep(t_next: float, gamma: float) -> float:
    """s = ⌊(1 − γ)·t'⌋ on the integer timestep grid (TCD, eq. 11 of the paper; diffusers uses floor).

    For a timestep between grid points (a schedule that is not on the training grid) s stays
    continuous, so that γ = 0 still gives s = t'.
    """
    s = (1.0 - gamma) * t_next
    if float(t_next).is_integer():
        # The tiny epsilon protects floor from (1-γ)·t' landing at 258.99999 for an exact 259.
        return float(math.floor(s + 1e-9))
    return s


def tcd_step(
    x: torch.Tensor,
    denoised: torch.Tensor,
    sigma: torch.Tensor,
    sigma_next: torch.Tensor,
    sigma_s: torch.Tensor,
    noise: torch.Tensor | None,
) -> torch.Tensor:
    """One TCD update in sigma space (see the module docstring); ``noise`` may be None when σ_s = σ_{t'}."""
    if float(sigma_next) == 0.0:
        return denoised
    eps = (x - denoised) / sigma
    x_next = denoised + sigma_s * eps
    extra = float(sigma_next) ** 2 - float(sigma_s) ** 2
    if extra > 0.0 and noise is not None:
        x_next = x_next + math.sqrt(extra) * noise
    return x_next


@torch.no_grad()
def sample_tcd(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callable[[dict], None] | None = None,
    disable: bool | None = None,
    eta: float = TCD_DEFAULT_GAMMA,
    noise_sampler: NoiseSampler | None = None,
    schedule: DiscreteSchedule | None = None,
) -> torch.Tensor:
    """Sample with TCD; ``eta`` is TCD's gamma in [0, 1].  One model call per step.

    ``sigmas`` are descending and end in 0 (any WebUI schedule; the "TCD" and "Trailing"
    schedules put them on the training grid, as Hyper-SD's unified LoRA expects).
    ``noise_sampler(sigma, sigma_next)`` returns unit Gaussian noise shaped like x (default:
    ``torch.randn_like``; WebUI passes its seeded one).  ``disable`` is accepted for
    k-diffusion compatibility (no progress bar is drawn here; WebUI draws its own).
    """
    del disable
    gamma = float(eta)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"Hyper-SD: TCD gamma (eta) must be between 0 and 1, got {gamma}")
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError("Hyper-SD: TCD needs at least two sigmas (one step), descending and ending in 0")
    extra_args = {} if extra_args is None else extra_args
    if noise_sampler is None:

        def noise_sampler(_sigma, _sigma_next):
            return torch.randn_like(x)

    schedule = find_schedule(model) if schedule is None else schedule
    s_in = x.new_ones([x.shape[0]])

    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})
        if float(sigma_next) == 0.0:
            x = denoised
            break
        if gamma == 0.0:
            sigma_s = sigma_next
        else:
            t_next = _as_timestep(schedule.sigma_to_t(sigma_next.reshape(())))
            s = tcd_intermediate_timestep(t_next, gamma)
            sigma_s = schedule.t_to_sigma(torch.as_tensor(s, dtype=sigmas.dtype, device=sigmas.device)).to(sigmas)
        noise = noise_sampler(sigma_s, sigma_next) if float(sigma_s) < float(sigma_next) else None
        x = tcd_step(x, denoised, sigma, sigma_next, sigma_s, noise)
    return x
