"""Training throughput of each stage (hypersd.distill.trainer.train_step) vs a plain diffusers LCM-LoRA-style step.

All run on the same randomly initialised UNet with the same rank-r LoRA (attention, feed-forward and conv layers):

* baseline (diffusers' train_lcm_distill_lora_sd*.py shape): teacher forward on cond+uncond with the LoRA off
  (one batch of 2B), target forward (LoRA on, no grad), student forward + backward, AdamW;
* tscd: the engine's real student update for a TSCD stage (k=1): teacher 2B with the LoRA off, the EMA target with
  the EMA weights swapped in, student forward + backward, AdamW, EMA update (optionally the adversarial head);
* dmd: score distillation's update (fake-score updates, real score with CFG, regression) — ``--stages``;
* feedback: human feedback (VAE decode under checkpointing, a reward model, the regulariser) — ``--stages``.

Prints samples/s, peak memory (GPU memory on CUDA, process peak RSS on the CPU) and each stage / baseline.

    python benchmarks/train_throughput.py --tiny                       # CPU smoke, seconds
    python benchmarks/train_throughput.py --base sd15 --batch 16 --resolution 512 --dtype bf16 --stages tscd,dmd,feedback
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
from hypersd.distill.cache import CachedData
from hypersd.distill.config import DistillConfig
from hypersd.distill.lora import add_lora, lora_parameters
from hypersd.distill.models import CONFIGS, SDModel, unet_eps
from hypersd.distill.tiny import tiny_unet_config
from hypersd.distill.trainer import TrainerState, train_step
from hypersd.distill.views import adapters_disabled
from hypersd.schedules import alphas_cumprod


def build_unet(base: str, tiny: bool, dtype: torch.dtype, device: str):
    from diffusers import UNet2DConditionModel

    if tiny:
        unet = UNet2DConditionModel(**tiny_unet_config(base))
    else:
        config = json.loads((CONFIGS / base / "unet" / "config.json").read_text())
        unet = UNet2DConditionModel.from_config(config)
    return unet.to(device, dtype)


def build_vae(base: str, tiny: bool, device: str):
    from diffusers import AutoencoderKL

    if tiny:
        vae = AutoencoderKL(block_out_channels=[16, 16, 16, 16], down_block_types=["DownEncoderBlock2D"] * 4,
                            up_block_types=["UpDecoderBlock2D"] * 4, latent_channels=4, layers_per_block=1,
                            norm_num_groups=8)  # fmt: skip
    else:
        vae = AutoencoderKL.from_config(json.loads((CONFIGS / base / "vae" / "config.json").read_text()))
    return vae.to(device).requires_grad_(False)


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
        captions=["a red circle"],
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


def build_state(base: str, args) -> TrainerState:
    from accelerate import Accelerator

    device = args.device
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    mixed = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[args.dtype]
    unet = build_unet(base, args.tiny, dtype, device)
    add_lora(unet, rank=args.rank, alpha=float(args.rank), targets="all", seed=0)
    named = lora_parameters(unet)
    for _, p in named:
        p.data = p.data.float()
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    latent = args.resolution // 8
    cache = random_cache(unet, base, args.batch, latent, 32 if args.tiny else 1280)
    accelerator = Accelerator(mixed_precision=mixed, cpu=not device.startswith("cuda"))
    cfg = DistillConfig(model="bench", batch_size=args.batch, omega_min=3.0, omega_max=8.0, loss="huber",
                        adversarial=args.adversarial, resolution=args.resolution, rank=args.rank, alpha=float(args.rank),
                        dmd_regression_pairs=args.batch, dmd_regression_steps=4, feedback_decode_size=args.decode_size,
                        reward=args.reward).resolved(base)  # fmt: skip
    model = SDModel(base, unet, build_vae(base, args.tiny, device), [], [], "benchmark")
    return TrainerState(
        cfg=cfg, accelerator=accelerator, model=model, cache=cache, acp=alphas_cumprod().to(device),
        grid=tscd.solver_grid(40).to(device), named=named, ema=[p.detach().clone() for _, p in named],
        optimizer=accelerator.prepare(torch.optim.AdamW([p for _, p in named], lr=1e-5)),
        generators={"data": torch.Generator().manual_seed(1), "noise": torch.Generator().manual_seed(2)},
    )  # fmt: skip


def baseline_step(state: TrainerState):
    """diffusers LCM-LoRA step: noise, teacher cond+uncond (LoRA off), guided DDIM, target (LoRA on), student."""
    device, acp, unet = state.device, state.acp, state.unet
    x0 = torch.stack(state.cache.latents).to(device)
    b = x0.shape[0]
    batch = state.batch(b)
    base_opt = torch.optim.AdamW(state.params, lr=1e-5)

    def step():
        t = torch.randint(20, 1000, (b,), device=device)
        t_prev = (t - 25).clamp(min=0)
        x_t = tscd.add_noise(x0, torch.randn_like(x0), t, acp)
        with state.accelerator.autocast():
            with torch.no_grad():
                with adapters_disabled(unet):
                    both = unet_eps(unet, torch.cat([x_t, x_t]), torch.cat([t, t]),
                                    tscd.default_cat_cond(batch.cond, batch.uncond))  # fmt: skip
                eps = tscd.cfg_combine(both[b:], both[:b], 5.0)
                x_prev = tscd.ddim_step(x_t, eps, t, t_prev, acp)
                tgt = tscd.ddim_step(x_prev, unet_eps(unet, x_prev, t_prev, batch.cond), t_prev, -1, acp)
            pred = tscd.ddim_step(x_t, unet_eps(unet, x_t, t, batch.cond), t, -1, acp)
            loss = tscd.pseudo_huber(pred.float(), tgt.float())
        state.accelerator.backward(loss)
        base_opt.step()
        base_opt.zero_grad(set_to_none=True)

    return step


def stage_for(name: str, state: TrainerState, made: dict):
    """The stage ``name``; feedback's regulariser is the dmd stage already made (one fake-score adapter), as in the
    engine."""
    from hypersd.distill.stage_dmd import DMDStage
    from hypersd.distill.stage_feedback import FeedbackStage
    from hypersd.distill.stage_tscd import TSCDStage

    if name == "tscd":
        return TSCDStage(1, state.cfg)
    if name == "dmd":
        return made.setdefault("dmd", DMDStage(state.cfg))
    return FeedbackStage(state.cfg, made.setdefault("dmd", DMDStage(state.cfg)))


def run(base: str, args) -> dict:
    state = build_state(base, args)
    result = {"base": base, "resolution": args.resolution, "batch": args.batch, "dtype": args.dtype,
              "device": args.device, "lora_params_M": round(sum(p.numel() for p in state.params) / 1e6, 2)}  # fmt: skip
    result["unet_params_M"] = round(sum(p.numel() for p in state.unet.parameters() if not p.requires_grad) / 1e6, 1)
    base_sps, base_mem = measure(baseline_step(state), args.warmup, args.steps, args.batch, args.device)
    result.update(baseline_samples_per_s=round(base_sps, 3), peak_mem_gib_baseline=round(base_mem, 2))
    made: dict = {}
    for name in args.stages.split(","):
        stage = stage_for(name, state, made)
        stage.ensure_prepared(state)
        sps, mem = measure(
            lambda stage=stage: train_step(state, stage), args.warmup, args.steps, args.batch, args.device
        )
        result[f"{name}_samples_per_s"] = round(sps, 3)
        result[f"{name}_over_baseline"] = round(sps / base_sps, 3)
        result[f"peak_mem_gib_{name}"] = round(mem, 2)
    return result


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
    p.add_argument("--stages", default="tscd", help="comma-separated: tscd, dmd, feedback")
    p.add_argument("--reward", default="", help="KIND:PATH for the feedback stage (e.g. demo:classifier.safetensors)")
    p.add_argument("--decode-size", type=int, default=None, help="the feedback stage's reduced decode size")
    p.add_argument("--adversarial", action="store_true")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    if not args.tiny and args.device == "cpu":
        print("Hyper-SD: full-size UNets need a GPU; use --tiny on the CPU", file=sys.stderr)
        return 2
    if "feedback" in args.stages and not args.reward:
        from hypersd.demo.classifier import CLASSIFIER_FILE
        from hypersd.demo.teacher import TEACHER_DIR

        args.reward = f"demo:{TEACHER_DIR / CLASSIFIER_FILE}"
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
        stages = ", ".join(f"{s} {result[f'{s}_samples_per_s']} samples/s = {result[f'{s}_over_baseline']}x "
                           f"({result[f'peak_mem_gib_{s}']} GiB)" for s in args.stages.split(","))  # fmt: skip
        print(f"{base}: LCM-LoRA-style baseline {result['baseline_samples_per_s']} samples/s "
              f"({result['peak_mem_gib_baseline']} GiB); {stages}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
