"""Few-step sampling for the demo: deterministic DDIM on trailing timesteps, for the teacher (with CFG) and the
students (no CFG; the guidance was distilled in).

For the students this is TCD with gamma = 0 ("predict x0, re-noise to the next trailing timestep
with the predicted eps"), which is the jump the TSCD consistency function was trained on and
Hyper-SD's official N-step recipe (DDIM, trailing).  Deterministic sampling makes "the same
noise" comparable across methods.
"""

from __future__ import annotations

import torch

from hypersd import tscd
from hypersd.demo.model import LoRAModel
from hypersd.schedules import trailing_timesteps


@torch.no_grad()
def ddim_sample(eps_fn, noise: torch.Tensor, steps: int, acp: torch.Tensor) -> torch.Tensor:
    """``steps`` DDIM steps on trailing timesteps (999, …), the last one returning the predicted x0."""
    ts = trailing_timesteps(steps, len(acp))
    x = noise
    for i, t in enumerate(ts):
        t_vec = torch.full((x.shape[0],), t, dtype=torch.long)
        t_next = ts[i + 1] if i + 1 < len(ts) else -1
        x = tscd.ddim_step(x, eps_fn(x, t_vec), t, t_next, acp)
    return x


def teacher_eps(model: LoRAModel, labels: torch.Tensor, omega: float, null_label: int):
    """The teacher's guided eps: one batched call on cond + uncond."""

    def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, torch.full_like(labels, null_label)]))
        eps_c, eps_u = both.chunk(2)
        return tscd.cfg_combine(eps_u, eps_c, omega)

    return eps_fn


def student_eps(model: LoRAModel, labels: torch.Tensor):
    def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model(x, t, labels)

    return eps_fn
