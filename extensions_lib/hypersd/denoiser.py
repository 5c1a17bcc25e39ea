"""A k-diffusion style wrapper around an eps-prediction model, for hosts without k-diffusion.

WebUI gives our sampler k-diffusion's ``CompVisDenoiser``; the demo, the benchmarks and the
tests use this small equivalent instead (k-diffusion's PyPI package needs torchvision, which
is not available beside torch 2.13).  The maths is the standard VP↔VE change of variables:
``x_ve = x_vp / sqrt(ᾱ_t)``, ``σ_t = sqrt((1 − ᾱ_t) / ᾱ_t)``, model input ``x_ve / sqrt(1 + σ²)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from hypersd.schedules import sigma_table

EpsModel = Callable[..., torch.Tensor]


class EpsDenoiser:
    """``denoiser(x, sigma, **kw) -> x0̂`` for an eps model called as ``eps_model(x_vp, t, **kw)``.

    ``sigma_to_t`` interpolates linearly in log σ between the table's entries, so table sigmas map
    back to their exact integer timesteps; ``t_to_sigma`` is the inverse interpolation.
    """

    def __init__(self, eps_model: EpsModel, alphas_cumprod: torch.Tensor):
        self.eps_model = eps_model
        self.sigmas = sigma_table(alphas_cumprod)
        self.log_sigmas = self.sigmas.log()
        self.calls = 0

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        log_sigma = torch.as_tensor(sigma, dtype=self.log_sigmas.dtype, device=self.log_sigmas.device).log()
        last = len(self.log_sigmas) - 1
        high = torch.searchsorted(self.log_sigmas, log_sigma.reshape(-1)).clamp(1, last)
        low = high - 1
        lo_v, hi_v = self.log_sigmas[low], self.log_sigmas[high]
        w = ((log_sigma.reshape(-1) - lo_v) / (hi_v - lo_v)).clamp(0, 1)
        return (low + w).reshape(log_sigma.shape)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=self.log_sigmas.dtype, device=self.log_sigmas.device)
        low = t.floor().long().clamp(0, len(self.log_sigmas) - 1)
        high = (low + 1).clamp(max=len(self.log_sigmas) - 1)
        w = t - low
        return ((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp()

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
        self.calls += 1
        sigma = sigma.to(x.dtype)
        c_in = (1.0 / (sigma**2 + 1.0) ** 0.5).reshape(-1, *([1] * (x.ndim - 1)))
        t = self.sigma_to_t(sigma)
        eps = self.eps_model(x * c_in, t, **kwargs)
        return x - eps * sigma.reshape(-1, *([1] * (x.ndim - 1)))
