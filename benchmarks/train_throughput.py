"""Training throughput: our TSCD step (hypersd.distill.engine._train_step) vs a plain diffusers LCM-LoRA-style step.

Both run on the same randomly initialised UNet with the same rank-r LoRA (attention, feed-forward and conv layers):

* baseline (diffusers' train_lcm_distill_lora_sd*.py shape): teacher forward on cond+uncond with the LoRA off
  (one batch of 2B), target forward (LoRA on, no grad), student forward + backward, AdamW;
* ours: the engine's real optimiser step through accelerate (teacher 2B with the LoRA off, EMA target with the
  EMA weights swapped in, student forward + backward, AdamW, EMA update), optionally with the adversarial head.

Prints samples/s, peak memory (GPU memory on CUDA, process peak RSS on the CPU) and ours/baseline.

    python benchmarks/train_throughput.py --tiny                      # CPU smoke, seconds
    python benchmarks/train_throughput.py --base sd15 --batch 16 --resolution 512 --dtype bf16   # on a GPU
    python benchmarks/train_throughput.py --base sdxl --batch 4 --resolution 1024 --dtype bf16
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch

from hypersd import tscd
from hypersd.distill.config import DistillConfig
from hypersd.distill.engine import CachedData, Discriminator, _train_step, adapters_disabled, swapped_weights
from hypersd.distill.lora import add_lora, lora_parameters
from hypersd.distill.models import CONFIGS, unet_eps
from hypersd.distill.tiny import tiny_unet_config
from hypersd.schedules import alphas_cumprod


def build_unet(base: str, tiny: bool, dtype: torch.dtype, device: str):
    from diffusers import UNet2DConditionModel

    if tiny:
        unet = UNet2DConditionModel(**tiny_unet_config(base))
    else:
        config = json.loads((CONFIGS / base / "unet" / "config.json").read_text())
        unet = UNet2DConditionModel.from_config(config)
    return unet.to(device, dtype)


def random_cache(unet, base: str, batch: int, latent: int, pooled_dim: int) -> CachedData:
    g = torch.Generator().manual_seed(0)
    dim = unet.config.cross_attention_dim
    sdxl = base == "sdxl"
    return CachedData(
        latents=[torch.randn(4, latent, latent, generator=g) for _ in range(batch)],
        caption_index=[0] * batch,
        hidden=torch.randn(1, 77, dim, generator=g),
        pooled=torch.randn(1, pooled_dim, generator=g) if sdxl else None,
        time_ids=[torch.tensor([latent * 8.0, latent * 8.0, 0, 0, latent * 8.0, latent * 8.0])] * batch
        if sdxl
        else [None] * batch,
        buckets={(latent, latent): list(range(batch))},
        uncond_hidden=torch.zeros(1, 77, dim),
        uncond_pooled=torch.zeros(1, pooled_dim) if sdxl else None,
    )


def peak_memory_gib(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(step, warmup: int, steps: int, batch: int, device: str) -> tuple[float, float]:
    for _ in range(warmup):
        step()
    sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    elapsed = time.perf_counter() - start
    return batch * steps / elapsed, peak_memory_gib(device)


def run(base: str, args) -> dict:
    from accelerate import Accelerator

    device = args.device
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    mixed = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[args.dtype]
    unet = build_unet(base, args.tiny, dtype, device)
    add_lora(unet, rank=args.rank, alpha=float(args.rank), targets="all", seed=0)
    named = lora_parameters(unet)
    for _, p in named:
        p.data = p.data.float()
    params = [p for _, p in named]
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    latent = args.resolution // 8
    pooled_dim = 32 if args.tiny else 1280
    cache = random_cache(unet, base, args.batch, latent, pooled_dim)
    acp, grid = alphas_cumprod().to(device), tscd.solver_grid(40).to(device)
    accelerator = Accelerator(mixed_precision=mixed, cpu=not device.startswith("cuda"))
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    unet_wrapped, optimizer = accelerator.prepare(unet, optimizer)
    raw = accelerator.unwrap_model(unet_wrapped)
    ema = [p.detach().clone() for p in params]
    cfg = DistillConfig(model="bench", batch_size=args.batch, omega_min=3.0, omega_max=8.0, loss="huber")
    data_gen, noise_gen = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)

    def student(x, t, c):
        return unet_eps(unet_wrapped, x, t, c)

    def teacher(x, t, c):
        with adapters_disabled(raw):
            return unet_eps(raw, x, t, c)

    def target(x, t, c):
        with swapped_weights(params, ema):
            return unet_eps(raw, x, t, c)

    disc = disc_opt = None
    if args.adversarial:
        disc = Discriminator(raw.config.block_out_channels[-1]).to(device)
        disc_opt = torch.optim.AdamW(disc.parameters(), lr=1e-5)

    def ours():
        _train_step(
            cfg, accelerator, cache, data_gen, noise_gen, 1, 1.0, 0.2 if args.adversarial else 0.0,
            student, teacher, target, raw, unet_wrapped, disc, optimizer, disc_opt, params, acp, grid, device,
        )  # fmt: skip
        tscd.ema_update(ema, params, 0.95)

    base_opt = torch.optim.AdamW(params, lr=1e-5)
    x0 = torch.stack(cache.latents).to(device)
    hidden = cache.hidden.expand(args.batch, -1, -1).to(device)
    cond = {"encoder_hidden_states": hidden}
    uncond = {"encoder_hidden_states": torch.zeros_like(hidden)}
    if base == "sdxl":
        extra = {
            "text_embeds": cache.pooled.expand(args.batch, -1).to(device),
            "time_ids": torch.stack(cache.time_ids).to(device),
        }
        cond.update(extra)
        uncond.update(extra)

    def baseline():
        # diffusers LCM-LoRA step: noise, teacher cond+uncond (LoRA off), guided DDIM, target (LoRA on), student
        b = args.batch
        t = torch.randint(20, 1000, (b,), device=device)
        t_prev = (t - 25).clamp(min=0)
        noise = torch.randn_like(x0)
        x_t = tscd.add_noise(x0, noise, t, acp)
        with accelerator.autocast():
            with torch.no_grad():
                with adapters_disabled(raw):
                    both = unet_eps(raw, torch.cat([x_t, x_t]), torch.cat([t, t]), tscd.default_cat_cond(cond, uncond))
                eps = tscd.cfg_combine(both[b:], both[:b], 5.0)
                x_prev = tscd.ddim_step(x_t, eps, t, t_prev, acp)
                tgt = tscd.ddim_step(x_prev, unet_eps(raw, x_prev, t_prev, cond), t_prev, -1, acp)
            pred = tscd.ddim_step(x_t, unet_eps(unet_wrapped, x_t, t, cond), t, -1, acp)
            loss = tscd.pseudo_huber(pred.float(), tgt.float())
        accelerator.backward(loss)
        base_opt.step()
        base_opt.zero_grad(set_to_none=True)

    base_sps, base_mem = measure(baseline, args.warmup, args.steps, args.batch, device)
    ours_sps, ours_mem = measure(ours, args.warmup, args.steps, args.batch, device)
    n_params = sum(p.numel() for p in raw.parameters() if not p.requires_grad)
    return {
        "base": base,
        "unet_params_M": round(n_params / 1e6, 1),
        "lora_params_M": round(sum(p.numel() for p in params) / 1e6, 2),
        "resolution": args.resolution,
        "batch": args.batch,
        "dtype": args.dtype,
        "device": device,
        "baseline_samples_per_s": round(base_sps, 3),
        "ours_samples_per_s": round(ours_sps, 3),
        "ratio_ours_over_baseline": round(ours_sps / base_sps, 3),
        "peak_mem_gib_baseline": round(base_mem, 2),
        "peak_mem_gib_ours": round(ours_mem, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny UNets (CPU smoke test)")
    p.add_argument("--base", choices=("sd15", "sdxl", "both"), default="both")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--adversarial", action="store_true")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    if not args.tiny and args.device == "cpu":
        print("Hyper-SD: full-size UNets need a GPU; use --tiny on the CPU", file=sys.stderr)
        return 2
    bases = ("sd15", "sdxl") if args.base == "both" else (args.base,)
    for base in bases:
        a = argparse.Namespace(**vars(args))
        a.dtype = a.dtype or ("fp32" if args.device == "cpu" else "bf16")
        a.batch = a.batch or (2 if args.tiny else (16 if base == "sd15" else 4))
        a.resolution = a.resolution or (64 if args.tiny else (512 if base == "sd15" else 1024))
        a.steps = a.steps or (5 if args.tiny else 10)
        a.warmup = a.warmup if a.warmup is not None else (1 if args.tiny else 3)
        if args.tiny:
            a.rank = min(a.rank, 8)
        result = run(base, a)
        print(json.dumps(result))
        print(
            f"{base}: ours {result['ours_samples_per_s']} samples/s vs LCM-LoRA-style {result['baseline_samples_per_s']} "
            f"-> ratio {result['ratio_ours_over_baseline']}; peak memory {result['peak_mem_gib_ours']} vs "
            f"{result['peak_mem_gib_baseline']} GiB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
