"""Per preset: UNet calls and batch rows per image, and our process() cost as a share of a generation.

Not a test.  UNet calls follow from each row (steps × calls per step: DPM++ SDE 2 per step but 1 on
the last, others 1); rows double when CFG > 1 (WebUI evaluates cond and uncond; at CFG 1 our fast
path evaluates cond only).  The process() share compares, in one run, the time of make_plan +
apply_plan on a WebUI-like processing object (batch of 8 prompts plus hires prompts) with the time
of the same preset's sampling loop on the tiny random model of ``python -m hypersd samplers``.
    python benchmarks/presets.py
"""

import time
from types import SimpleNamespace

import torch

from hypersd import schedules
from hypersd.compare import CFGDenoiser, TinyUNet, karras_sigmas, sample_dpmpp_sde, sample_euler
from hypersd.denoiser import EpsDenoiser
from hypersd.loras import LoraInfo
from hypersd.plan import CurrentValues, make_plan
from hypersd.plan_apply import apply_plan
from hypersd.presets import PRESETS
from hypersd.sampling import sample_tcd
from hypersd.settings import HyperSettings


def unet_calls(sampler: str, steps: int) -> int:
    return 2 * steps - 1 if sampler == "DPM++ SDE" else steps


def fake_p(prompts):
    return SimpleNamespace(
        prompt=prompts[0], all_prompts=list(prompts), all_hr_prompts=list(prompts), main_prompt=prompts[0],
        hr_prompt="", sampler_name="Euler", scheduler="Automatic", steps=20, cfg_scale=7.0, eta=None, width=512,
        height=512, enable_hr=False, hr_second_pass_steps=0, denoising_strength=0.7, extra_generation_params={},
    )  # fmt: skip


def sample_once(den, row, steps, cfg):
    table = den.sigmas
    cond, uncond = torch.randn(1, 16), torch.zeros(1, 16)
    model = CFGDenoiser(den, cond, uncond, cfg)
    if row.sampler == "DPM++ SDE":
        sigmas, fn = karras_sigmas(steps, float(table[0]), float(table[-1])), sample_dpmpp_sde
    elif row.sampler == "TCD":
        sigmas = schedules.timesteps_to_sigmas(schedules.tcd_timesteps(min(steps, 50)), table)
        fn = sample_tcd
    else:
        sigmas, fn = schedules.timesteps_to_sigmas(schedules.trailing_timesteps(steps), table), sample_euler
    x = torch.randn(1, 4, 32, 32) * sigmas[0]
    start = time.perf_counter()
    fn(model, x, sigmas)
    return time.perf_counter() - start


def process_once(settings, base, loras, prompts, current) -> float:
    """Seconds per process() (make_plan + apply_plan), averaged over 20 calls."""
    start = time.perf_counter()
    for _ in range(20):
        plan = make_plan(settings, base, loras, prompts, current, hr_prompts=prompts)
        assert plan.ok, plan.errors
        apply_plan(fake_p(prompts), plan)
    return (time.perf_counter() - start) / 20


def main():
    torch.manual_seed(0)
    den = EpsDenoiser(TinyUNet().eval(), schedules.alphas_cumprod().float())
    print(f"{'preset':<24} {'base':<5} {'sampler':<10} {'steps':>5} {'CFG':>4} {'UNet calls':>10} {'rows':>5} "
          f"{'process() ms':>12} {'sampling ms':>11} {'share':>7}")  # fmt: skip
    for row in PRESETS:
        if row.id == "distilled":
            continue
        calls = unet_calls(row.sampler, row.steps)
        rows = calls * (2 if row.cfg > 1 else 1)
        base = "sd15" if row.base == "any" else row.base
        loras = [LoraInfo(name=row.lora_stem, base=base)] if row.lora_file else []
        settings = HyperSettings(enabled=True, preset=row.id)
        prompts = [f"a cat {i}" for i in range(8)]
        current = CurrentValues(model_name=row.model_file, unet_name=None)
        ours = min(process_once(settings, base, loras, prompts, current) for _ in range(5))  # best of 5: load-proof
        sampling = min(sample_once(den, row, row.steps, row.cfg) for _ in range(3))
        print(f"{row.id:<24} {row.base:<5} {row.sampler:<10} {row.steps:>5} {row.cfg:>4g} {calls:>10} {rows:>5} "
              f"{ours * 1e3:>12.2f} {sampling * 1e3:>11.1f} {ours / (ours + sampling):>6.1%}")  # fmt: skip
    print("share = process() / (process() + sampling loop) on a tiny CPU model; a real UNet call is 30-6000 ms,")
    print("so in WebUI the share is far smaller than shown here.")


if __name__ == "__main__":
    main()
