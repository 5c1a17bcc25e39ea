"""How close can a LoRA get to the demo teacher's guided ODE when it has the guidance baked in (CFG 1 at inference)?

    python benchmarks/guidance_floor.py [--ranks 8 64] [--steps 50 300 600]

The demo's per-stage TSCD LoRAs run at CFG 1, so each must reproduce ``eps_u + w (eps_c - eps_u)`` (w = 3, the
report's reference) in a single UNet pass. This benchmark trains LoRAs on *only* that (guidance distillation: the
student's eps against the teacher's guided eps at random timesteps on the demo's noised training latents; no TSCD,
no segments), then samples them with the same 8- and 4-step DDIM as the teacher and prints the pixel error to the
teacher's 25-step guided result from the same noise, as a ratio to the teacher's own 8- and 4-step guided DDIM
error: the floor that guidance baking alone leaves, which a TSCD stage at k steps cannot go below by its segments.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from hypersd import tscd
from hypersd.demo.cli import TRAINING_IMAGES, report_prompts, write_training_images
from hypersd.demo.teacher import TEACHER_DIR
from hypersd.distill.cache import build_cache, sample_batch
from hypersd.distill.config import DistillConfig
from hypersd.distill.data import discover_dataset
from hypersd.distill.lora import add_lora, lora_parameters
from hypersd.distill.models import encode_prompts, load_model, unet_eps
from hypersd.distill.views import adapters_disabled
from hypersd.schedules import alphas_cumprod

GUIDANCE = 3.0  # the demo's --omega-min/--omega-max and the report's reference CFG
SAMPLES, BATCH, LR = 128, 16, 1e-3  # the report's sample count; the demo's batch size and learning rate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, nargs="+", default=[8, 64])
    p.add_argument("--steps", type=int, nargs="+", default=[50, 300, 600], help="measure after these many updates")
    args = p.parse_args(argv)
    acp = alphas_cumprod()
    with tempfile.TemporaryDirectory() as tmp:
        write_training_images(Path(tmp) / "data", TRAINING_IMAGES, seed=0)
        cfg = DistillConfig(model=str(TEACHER_DIR), resolution=32).resolved("sd15")
        model = load_model(TEACHER_DIR)
        cache = build_cache(model, discover_dataset(Path(tmp) / "data"), cfg, "cpu", acp, lambda _r: None)
    prompts = [report_prompts()[i % 24] for i in range(SAMPLES)]
    cond = encode_prompts(model, prompts)
    uncond = {"encoder_hidden_states": cache.uncond_hidden.expand(SAMPLES, -1, -1)}
    noise = torch.randn((SAMPLES, *cache.latents[0].shape), generator=torch.Generator().manual_seed(1234))
    unet = model.unet

    def eps(x, t, c):
        return unet_eps(unet, x, t, c)

    @torch.no_grad()
    def pixels(steps, omega, c_uncond):
        z = tscd.guided_ddim_sample(eps, noise, cond, c_uncond, steps, omega, acp)
        return model.vae.decode(z / model.vae.config.scaling_factor).sample.clamp(-1, 1)

    reference = pixels(25, GUIDANCE, uncond)
    teacher = {n: float((pixels(n, GUIDANCE, uncond) - reference).pow(2).mean()) for n in (8, 4)}
    print(f"teacher guided DDIM pixel MSE to its 25-step result: 8 steps {teacher[8]:.5f}, 4 steps {teacher[4]:.5f}")
    print("LoRA with the guidance baked in (CFG 1), pixel MSE / the teacher's at the same steps:")
    for rank in args.ranks:
        add_lora(unet, rank, float(rank), "all", seed=0, adapter_name=f"floor{rank}")
        params = [p for _, p in lora_parameters(unet, f"floor{rank}")]
        opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
        gen, done, started = torch.Generator().manual_seed(5), 0, time.perf_counter()
        for target_steps in sorted(args.steps):
            while done < target_steps:
                x0, c, u = sample_batch(cache, BATCH, gen, torch.device("cpu"))
                t = torch.randint(0, 1000, (BATCH,), generator=gen)
                x_t = tscd.add_noise(x0, torch.randn(x0.shape, generator=gen), t, acp)
                with torch.no_grad(), adapters_disabled(unet):
                    both = eps(torch.cat([x_t, x_t]), torch.cat([t, t]), tscd.default_cat_cond(c, u))
                    target = tscd.cfg_combine(both[BATCH:], both[:BATCH], GUIDANCE)
                torch.nn.functional.mse_loss(eps(x_t, t, c), target).backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                done += 1
            ratios = {n: float((pixels(n, 1.0, cond) - reference).pow(2).mean()) / teacher[n] for n in (8, 4)}
            print(f"  rank {rank:3d}, {done:4d} updates: 8 steps {ratios[8]:.2f}x, 4 steps {ratios[4]:.2f}x"
                  f"  ({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
