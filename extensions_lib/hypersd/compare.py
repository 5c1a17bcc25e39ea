"""What a few-step recipe costs: UNet calls and time per image for TCD, DPM++ SDE and Euler.

``python -m hypersd samplers`` runs the three recipes that matter to WebUI users on the same
tiny randomly initialised eps-model, from the same noise, and prints a table measured in one
run.  Euler and DPM++ SDE are small re-implementations of k-diffusion's algorithms (the
PyPI k-diffusion needs torchvision, which is not available here); they make the same number
of model calls per step as WebUI's own samplers (Euler 1, DPM++ SDE 2, its last step 1).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import torch

from hypersd import schedules
from hypersd.denoiser import EpsDenoiser
from hypersd.sampler_names import TCD_DEFAULT_GAMMA
from hypersd.sampling import sample_tcd


class TinyUNet(torch.nn.Module):
    """A small conv net with timestep and conditioning inputs, standing in for a UNet."""

    def __init__(self, channels: int = 4, width: int = 64, cond_dim: int = 16, depth: int = 4):
        super().__init__()
        self.inp = torch.nn.Conv2d(channels, width, 3, padding=1)
        self.blocks = torch.nn.ModuleList(torch.nn.Conv2d(width, width, 3, padding=1) for _ in range(depth))
        self.t_proj = torch.nn.Linear(32, width)
        self.c_proj = torch.nn.Linear(cond_dim, width)
        self.out = torch.nn.Conv2d(width, channels, 3, padding=1)
        self.rows = 0  # batch rows evaluated: the real cost of CFG's doubled batch

    def forward(self, x, t, cond):
        self.rows += x.shape[0]
        t = torch.as_tensor(t, dtype=x.dtype).reshape(-1).expand(x.shape[0])
        freqs = torch.exp(torch.linspace(0, -8, 16, dtype=x.dtype))
        emb = torch.cat([torch.sin(t[:, None] * freqs), torch.cos(t[:, None] * freqs)], dim=1)
        h = self.inp(x) + (self.t_proj(emb) + self.c_proj(cond))[:, :, None, None]
        for block in self.blocks:
            h = h + block(torch.nn.functional.silu(h))
        return self.out(torch.nn.functional.silu(h))


class CFGDenoiser:
    """Classifier-free guidance around a k-diffusion denoiser; at CFG 1 the uncond pass is skipped."""

    def __init__(self, inner: EpsDenoiser, cond: torch.Tensor, uncond: torch.Tensor, cfg: float):
        self.inner_model = inner
        self.cond, self.uncond, self.cfg = cond, uncond, cfg

    def __call__(self, x, sigma):
        if self.cfg == 1.0:
            return self.inner_model(x, sigma, cond=self.cond)
        both = self.inner_model(torch.cat([x, x]), torch.cat([sigma, sigma]), cond=torch.cat([self.cond, self.uncond]))
        c, u = both.chunk(2)
        return u + (c - u) * self.cfg


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022) eq. 5, with a final 0 (k-diffusion's get_sigmas_karras)."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sig = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sig, sig.new_zeros(1)]).float()


@torch.no_grad()
def sample_euler(model, x, sigmas):
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * x.new_ones(x.shape[0]))
        d = (x - denoised) / sigmas[i]
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


@torch.no_grad()
def sample_lcm(model, x, sigmas, noise_sampler=None):
    """k-diffusion's LCM sampler (WebUI's "LCM"): jump to the x0 prediction, re-noise to the next sigma."""
    for i in range(len(sigmas) - 1):
        x = model(x, sigmas[i] * x.new_ones(x.shape[0]))
        if float(sigmas[i + 1]) > 0:
            noise = noise_sampler(sigmas[i], sigmas[i + 1]) if noise_sampler is not None else torch.randn_like(x)
            x = x + sigmas[i + 1] * noise
    return x


@torch.no_grad()
def sample_dpmpp_sde(model, x, sigmas, eta=1.0, r=0.5, generator=None):
    """DPM-Solver++ (stochastic, 2 model calls per step) in its k-diffusion form, Gaussian noise."""

    def noise():
        return torch.randn(x.shape, generator=generator, dtype=x.dtype)

    def t_of(s):
        return -math.log(s)

    def s_of(t):
        return math.exp(-t)

    for i in range(len(sigmas) - 1):
        s_in = x.new_ones(x.shape[0])
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = model(x, sigmas[i] * s_in)
        if sigma_next == 0:
            x = x + (x - denoised) / sigma * (sigma_next - sigma)
            continue
        t, t_next = t_of(sigma), t_of(sigma_next)
        h = t_next - t
        s = t + h * r
        fac = 1 / (2 * r)
        sd, su = _ancestral(sigma, s_of(s), eta)
        s_ = t_of(sd)
        x2 = (s_of(s_) / sigma) * x - math.expm1(-(s_ - t)) * denoised + noise() * su
        denoised2 = model(x2, torch.full_like(s_in, s_of(s)))
        sd, su = _ancestral(sigma, sigma_next, eta)
        t_next_ = t_of(sd)
        denoised_d = (1 - fac) * denoised + fac * denoised2
        x = (s_of(t_next_) / sigma) * x - math.expm1(-(t_next_ - t)) * denoised_d + noise() * su
    return x


def _ancestral(sigma_from: float, sigma_to: float, eta: float) -> tuple[float, float]:
    up = min(sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    return (sigma_to**2 - up**2) ** 0.5, up


@dataclass
class Row:
    recipe: str
    steps: int
    cfg: float
    calls: int
    rows: int
    seconds: float


def run_recipes(size: int = 32, batch: int = 1, repeats: int = 3, seed: int = 0) -> list[Row]:
    torch.manual_seed(seed)
    unet = TinyUNet().eval()
    acp = schedules.alphas_cumprod().float()
    den = EpsDenoiser(unet, acp)
    cond, uncond = torch.randn(batch, 16), torch.zeros(batch, 16)
    table = den.sigmas
    smin, smax = float(table[0]), float(table[-1])
    recipes = [
        ("TCD, TCD schedule (gamma 0.3)", 4, 1.0, schedules.timesteps_to_sigmas(schedules.tcd_timesteps(4), table),
         lambda m, x, s: sample_tcd(m, x, s, eta=TCD_DEFAULT_GAMMA)),
        ("DPM++ SDE Karras", 4, 2.0, karras_sigmas(4, smin, smax), sample_dpmpp_sde),
        ("Euler, Trailing", 25, 7.0, schedules.timesteps_to_sigmas(schedules.trailing_timesteps(25), table),
         sample_euler),
    ]  # fmt: skip
    out = []
    for name, steps, cfg, sigmas, fn in recipes:
        model = CFGDenoiser(den, cond, uncond, cfg)
        best = math.inf
        for _ in range(repeats):
            den.calls, unet.rows = 0, 0
            x = torch.randn(batch, 4, size, size, generator=torch.Generator().manual_seed(seed)) * sigmas[0]
            start = time.perf_counter()
            fn(model, x, sigmas)
            best = min(best, time.perf_counter() - start)
        out.append(Row(name, steps, cfg, den.calls, unet.rows, best / batch))
    return out


def format_table(rows: list[Row]) -> str:
    base = rows[0]
    lines = [
        f"{'recipe':<32} {'steps':>5} {'CFG':>4} {'UNet calls':>10} {'UNet rows':>9} {'ms/image':>9} {'vs TCD':>7}",
    ]
    for r in rows:
        lines.append(
            f"{r.recipe:<32} {r.steps:>5} {r.cfg:>4g} {r.calls:>10} {r.rows:>9} {r.seconds * 1e3:>9.1f} "
            f"{r.seconds / base.seconds:>6.1f}x"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hypersd samplers", description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32, help="latent size (32 = a 256x256 image)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = run_recipes(size=args.size, repeats=args.repeats)
    print(format_table(rows))
    print("UNet calls: model evaluations; rows: batch rows evaluated (CFG doubles the batch).")
    print("Here CFG 1 skips the unconditional pass (WebUI 1.10 by itself evaluates it anyway).")
    return 0
