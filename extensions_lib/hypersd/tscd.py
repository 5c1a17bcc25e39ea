"""Trajectory Segmented Consistency Distillation (TSCD): the pure math, shared by the demo and the engine.

Conventions (see docs/TSCD.md):

* Timesteps are integer *training* timesteps in ``[0, T-1]`` (``T = train_steps = 1000``).
* Models predict noise (eps) in the variance-preserving form
  ``x_t = sqrt(ᾱ_t)·x0 + sqrt(1-ᾱ_t)·eps`` with ``ᾱ = hypersd.schedules.alphas_cumprod()``.
* A model is a callable ``(x_t, t: LongTensor[B], cond) -> eps``.
* The consistency function is one deterministic DDIM step with the model's eps:
  ``f(x_t, t -> t_end) = ddim_step(x_t, model(x_t, t, cond), t, t_end)``.

Everything here is torch only and free of global state.  ᾱ is kept in float64 and the
per-timestep coefficients are computed in float64 before they are cast to the tensors' dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

Model = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]

#: Suggested per-stage (w_mse, w_adv) from TSCD.md: MSE dominates while the segments are short
#: (prediction and target are close), the adversarial term grows as k shrinks.
DEFAULT_STAGE_WEIGHTS: dict[int, tuple[float, float]] = {8: (1.0, 0.0), 4: (1.0, 0.05), 2: (0.75, 0.1), 1: (0.5, 0.2)}


# --------------------------------------------------------------------------------------------- grid


def solver_grid(num_steps: int = 50, train_steps: int = 1000, include_top: bool = False) -> torch.Tensor:
    """Ascending DDIM solver grid including 0: ``[0, T/N, 2T/N, ..., T - T/N]`` (int64, length N).

    LCM uses ``i·T/N - 1``; we use exact multiples of ``T/N`` instead so that every segment edge
    ``j·T/k`` (k dividing N) is itself a grid point and ``t_end`` can land on it exactly.  The top
    point ``T - T/N`` is the highest *training* start timestep; trailing inference starts at T-1,
    one grid cell above, which the student sees as the same segment.

    ``include_top`` adds the point ``T`` (length N+1): the trailing grid, with :func:`tscd_step_targets`'s
    ``shift=1`` (timestep = grid point - 1: 999, 974, ..., 24 and the clean -1), whose segment edges are exactly
    the timesteps trailing inference queries (k=8: 999, 874, ..., 124).
    """
    if num_steps < 1 or train_steps % num_steps:
        raise ValueError(
            f"Hyper-SD: the solver grid needs a step count that divides {train_steps} (e.g. 40 or 50), got {num_steps}"
        )
    top = train_steps + 1 if include_top else train_steps
    return torch.arange(0, top, train_steps // num_steps, dtype=torch.long)


def _segment_length(k: int, train_steps: int) -> int:
    if k < 1 or train_steps % k:
        raise ValueError(f"Hyper-SD: the number of segments k must divide {train_steps} (1, 2, 4 or 8), got {k}")
    return train_steps // k


def segment_lower_edge(t: torch.Tensor, k: int, train_steps: int = 1000) -> torch.Tensor:
    """``floor(t / (T/k)) · (T/k)``: the lower edge of the segment ``[j·T/k, (j+1)·T/k)`` holding ``t``."""
    seg = _segment_length(k, train_steps)
    return torch.div(t, seg, rounding_mode="floor") * seg


def sample_grid_index(
    batch: int, num_steps: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """Grid indices ``n`` uniform in ``[1, N-1]`` (index 0 is timestep 0, which has no step below it)."""
    if num_steps < 2:
        raise ValueError(f"Hyper-SD: the solver grid needs at least 2 points, got {num_steps}")
    return torch.randint(1, num_steps, (batch,), generator=generator, device=device)


def sample_t_end(
    n_idx: torch.Tensor,
    grid: torch.Tensor,
    k: int,
    generator: torch.Generator | None = None,
    train_steps: int = 1000,
) -> torch.Tensor:
    """``t_end`` uniform over the grid points in ``[t_b, t_{n-1}]`` (inclusive), per batch element.

    ``t_b`` is the lower edge of the segment that holds the teacher's step ``t_n -> t_{n-1}``:
    ``t_b = segment_lower_edge(t_{n-1})``.  This equals TSCD.md's ``floor(t_n/(T/k))·(T/k)``
    except when ``t_n`` is itself a segment edge, where that formula gives ``t_b = t_n > t_{n-1}``
    (an empty range); the step from an edge belongs to the segment below it, as trailing sampling
    does (k=2 samples 999 -> 499 -> 0: the second step starts at the edge and goes to 0).
    """
    grid = grid.to(n_idx.device)
    seg = _segment_length(k, train_steps)
    cell = int(grid[1] - grid[0]) if len(grid) > 1 else train_steps
    if seg % cell:
        raise ValueError(
            f"Hyper-SD: k={k} segments do not fall on a {len(grid)}-point solver grid; "
            "use a grid size N with N % k == 0 (e.g. N=40 or 48 for k up to 8)"
        )
    if bool((n_idx < 1).any()) or bool((n_idx >= len(grid)).any()):
        raise ValueError(f"Hyper-SD: grid indices must lie in [1, {len(grid) - 1}]")
    t_prev = grid[n_idx - 1]
    t_b = segment_lower_edge(t_prev, k, train_steps)
    idx_b = torch.searchsorted(grid, t_b)
    count = n_idx - idx_b  # grid points in [t_b, t_{n-1}], always >= 1
    u = torch.rand(n_idx.shape, generator=generator, device=n_idx.device if generator is None else generator.device)
    offset = torch.minimum((u.to(n_idx.device) * count).long(), count - 1)
    return grid[idx_b + offset]


# --------------------------------------------------------------------------------------------- VP algebra


def _acp_at(acp: torch.Tensor, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
    """ᾱ_t in float64 shaped to broadcast against ``like`` per batch element; ``t < 0`` means ᾱ = 1 (clean)."""
    t = torch.as_tensor(t, device=acp.device).long()
    if t.ndim == 0:
        t = t.expand(like.shape[0])
    values = torch.where(t < 0, torch.ones((), dtype=acp.dtype, device=acp.device), acp[t.clamp(min=0)])
    return values.to(torch.float64).reshape(-1, *([1] * (like.ndim - 1)))


def _cast(coef: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return coef.to(device=like.device, dtype=like.dtype)


def add_noise(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor | int, acp: torch.Tensor) -> torch.Tensor:
    """``x_t = sqrt(ᾱ_t)·x0 + sqrt(1-ᾱ_t)·eps``, with one t per batch element."""
    a = _acp_at(acp, t, x0)
    return _cast(a.sqrt(), x0) * x0 + _cast((1 - a).sqrt(), x0) * eps


def predict_x0(x_t: torch.Tensor, eps: torch.Tensor, t: torch.Tensor | int, acp: torch.Tensor) -> torch.Tensor:
    """``x0 = (x_t - sqrt(1-ᾱ_t)·eps) / sqrt(ᾱ_t)``."""
    a = _acp_at(acp, t, x_t)
    return _cast(1 / a.sqrt(), x_t) * x_t - _cast(((1 - a) / a).sqrt(), x_t) * eps


def ddim_step(
    x_t: torch.Tensor, eps: torch.Tensor, t: torch.Tensor | int, t_next: torch.Tensor | int, acp: torch.Tensor
) -> torch.Tensor:
    """Deterministic DDIM (eta 0) from ``t`` to ``t_next``; ``t_next == t`` is the identity, ``t_next = -1`` gives x0.

    Written as ``c_x·x_t + c_eps·eps`` with float64 coefficients, so that ``t_next == t`` returns
    ``x_t`` exactly (``c_x = 1``, ``c_eps = 0``) rather than up to rounding.
    """
    a = _acp_at(acp, t, x_t)
    a_next = _acp_at(acp, t_next, x_t)
    ratio = (a_next / a).sqrt()
    c_x = ratio
    c_eps = (1 - a_next).sqrt() - ratio * (1 - a).sqrt()
    return _cast(c_x, x_t) * x_t + _cast(c_eps, x_t) * eps


# --------------------------------------------------------------------------------------------- guidance, loss, EMA


def cfg_combine(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, omega: float | torch.Tensor) -> torch.Tensor:
    """Classifier-free guidance ``eps_u + ω·(eps_c - eps_u)``; ``ω`` a number or one value per batch element."""
    if isinstance(omega, torch.Tensor) and omega.ndim > 0:
        omega = omega.to(device=eps_cond.device, dtype=eps_cond.dtype).reshape(-1, *([1] * (eps_cond.ndim - 1)))
    return eps_uncond + omega * (eps_cond - eps_uncond)


def sample_omega(
    batch: int,
    omega_min: float,
    omega_max: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Guidance scales ``ω ~ U(omega_min, omega_max)``, one per batch element (float32)."""
    if omega_max < omega_min:
        raise ValueError(f"Hyper-SD: guidance range is empty: omega_min={omega_min} > omega_max={omega_max}")
    u = torch.rand(batch, generator=generator, device=device)
    return omega_min + (omega_max - omega_min) * u


def pseudo_huber(pred: torch.Tensor, target: torch.Tensor, c: float = 0.001) -> torch.Tensor:
    """Mean of ``sqrt((pred-target)² + c²) - c`` over all elements, computed in float32 or wider.

    As in diffusers' LCM scripts, c applies to the tensors as given (latents scaled by the VAE
    factor there; the demo's pixel tensors in [-1, 1] here): quadratic for |d| << c, linear above.
    """
    diff = pred.float() - target.float()
    return (torch.sqrt(diff * diff + c * c) - c).mean()


def stage_weights(k: int, overrides: dict[int, tuple[float, float]] | None = None) -> tuple[float, float]:
    """Suggested ``(w_mse, w_adv)`` for a stage with k segments (TSCD.md), optionally overridden per k."""
    table = {**DEFAULT_STAGE_WEIGHTS, **(overrides or {})}
    if k not in table:
        raise ValueError(f"Hyper-SD: no loss weights for k={k}; give them in overrides (known: {sorted(table)})")
    return table[k]


@torch.no_grad()
def ema_update(target_params: Iterable[torch.Tensor], online_params: Iterable[torch.Tensor], decay: float) -> None:
    """In place: ``target ← decay·target + (1-decay)·online`` for each pair of parameters."""
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"Hyper-SD: EMA decay must be in [0, 1], got {decay}")
    targets, onlines = list(target_params), list(online_params)
    if len(targets) != len(onlines):
        raise ValueError(f"Hyper-SD: EMA target has {len(targets)} parameters but the student has {len(onlines)}")
    for tgt, src in zip(targets, onlines, strict=True):
        tgt.mul_(decay).add_(src.detach().to(tgt.dtype), alpha=1.0 - decay)


# --------------------------------------------------------------------------------------------- one training step


def default_cat_cond(cond: Any, uncond: Any) -> Any:
    """Concatenate conditioning along the batch: tensors directly, dicts key by key (SDXL's added_cond_kwargs)."""
    if isinstance(cond, torch.Tensor):
        return torch.cat([cond, uncond], dim=0)
    if isinstance(cond, dict):
        return {key: default_cat_cond(cond[key], uncond[key]) for key in cond}
    raise TypeError(f"Hyper-SD: cannot batch conditioning of type {type(cond).__name__}; pass cat_cond=")


def tscd_step_targets(
    x0: torch.Tensor,
    cond: Any,
    uncond: Any,
    k: int,
    *,
    student: Model,
    teacher: Model,
    target: Model,
    acp: torch.Tensor,
    grid: torch.Tensor,
    omega: float | torch.Tensor,
    generator: torch.Generator | None = None,
    offset_noise: float = 0.0,
    cat_cond: Callable[[Any, Any], Any] | None = None,
    train_steps: int = 1000,
    shift: int = 0,
) -> dict[str, torch.Tensor]:
    """TSCD.md's "one training step", steps 1-4, for a stage with ``k`` segments.

    The segment arithmetic runs on the grid; the models see ``grid point - shift`` (``shift=1`` with a grid that
    includes T: trailing timesteps; a target point at -1 is the clean image). The returned timesteps are the
    models' (clamped at 0).

    Returns ``pred`` (student, with grad), ``target`` (no grad), ``t_n``, ``t_prev``, ``t_end``,
    ``t_b`` and ``x_tn``.  The caller computes the loss (MSE / pseudo-Huber + adversarial) from
    pred and target, steps the optimiser and updates the EMA.  The teacher sees cond and uncond in
    one batched call of ``2B``; the target (EMA) is called once on the teacher's result (an exact
    identity where ``t_end == t_{n-1}``).
    """
    batch = x0.shape[0]
    device = x0.device
    grid = grid.to(device)
    gen_device = generator.device if generator is not None else device

    # 1. noise and a grid timestep t_n, n >= 1
    eps = torch.randn(x0.shape, generator=generator, device=gen_device, dtype=x0.dtype).to(device)
    if offset_noise:
        # diffusers-style offset noise: a per-channel constant shift, helps very dark / bright outputs.
        shape = (batch, x0.shape[1]) + (1,) * (x0.ndim - 2)
        eps = eps + offset_noise * torch.randn(shape, generator=generator, device=gen_device, dtype=x0.dtype).to(device)
    n_idx = sample_grid_index(batch, len(grid), generator=generator, device=gen_device).to(device)
    t_n = grid[n_idx]
    t_prev = grid[n_idx - 1]
    # 2. t_end on the grid in [t_b, t_{n-1}]
    t_end = sample_t_end(n_idx, grid, k, generator=generator, train_steps=train_steps)
    t_b = segment_lower_edge(t_prev, k, train_steps)
    t_n, t_prev, t_end, t_b = (t - shift for t in (t_n, t_prev, t_end, t_b))
    x_tn = add_noise(x0, eps, t_n, acp)

    with torch.no_grad():
        # 3. teacher: one guided DDIM step t_n -> t_{n-1}; cond and uncond in one batch of 2B
        both = (cat_cond or default_cat_cond)(cond, uncond)
        eps_both = teacher(torch.cat([x_tn, x_tn]), torch.cat([t_n, t_n]), both)
        eps_cond, eps_uncond = eps_both[:batch], eps_both[batch:]
        x_prev = ddim_step(x_tn, cfg_combine(eps_uncond, eps_cond, omega), t_n, t_prev, acp)
        # 4. target: the EMA model carries the teacher's point on to t_end
        x_target = ddim_step(x_prev, target(x_prev, t_prev, cond), t_prev, t_end, acp)

    pred = ddim_step(x_tn, student(x_tn, t_n, cond), t_n, t_end, acp)
    return {
        "pred": pred,
        "target": x_target.detach(),
        "t_n": t_n,
        "t_prev": t_prev.clamp(min=0),
        "t_end": t_end.clamp(min=0),
        "t_b": t_b.clamp(min=0),
        "x_tn": x_tn,
    }


@torch.no_grad()
def guided_ddim_sample(
    teacher: Model,
    x: torch.Tensor,
    cond: Any,
    uncond: Any,
    steps: int,
    omega: float | torch.Tensor,
    acp: torch.Tensor,
    cat_cond: Callable[[Any, Any], Any] | None = None,
) -> torch.Tensor:
    """The teacher's deterministic DDIM with classifier-free guidance on trailing timesteps, from ``x`` (noise at
    t = 999) to its x0 prediction; cond and uncond run in one batch of 2B per step."""
    from hypersd.schedules import trailing_timesteps

    batch = x.shape[0]
    both = (cat_cond or default_cat_cond)(cond, uncond)
    ts = trailing_timesteps(steps)
    for i, t in enumerate(ts):
        t_next = ts[i + 1] if i + 1 < len(ts) else -1
        tt = torch.full((batch,), t, dtype=torch.long, device=x.device)
        eps = teacher(torch.cat([x, x]), torch.cat([tt, tt]), both)
        x = ddim_step(x, cfg_combine(eps[batch:], eps[:batch], omega), tt, t_next, acp)
    return x
