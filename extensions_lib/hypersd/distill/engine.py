"""The TSCD training engine: stages k = 8 → 4 → 2 → 1 on a LoRA of the UNet, with accelerate.

One optimiser step per stage step (``grad_accum`` micro-batches). The teacher is the same UNet with the LoRA
switched off, the target the same UNet with the EMA LoRA weights swapped in; the math is ``hypersd.tscd``.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from hypersd import tscd
from hypersd.schedules import alphas_cumprod
from hypersd.train import layout

from . import checkpoint as ckpt
from .cache import CachedData, build_cache, sample_batch, vae_factor
from .config import DistillConfig
from .data import discover_dataset, validate_images
from .export import ExportError, export_lora, lora_metadata
from .lora import add_lora, lora_parameters
from .models import load_model, unet_eps
from .samples import save_sample_grid, student_sample
from .views import Discriminator, adapters_disabled, swapped_weights, teacher_mid_features

__all__ = [
    "CachedData",
    "Discriminator",
    "Interrupted",
    "RunPaths",
    "RunResult",
    "TrainingError",
    "adapters_disabled",
    "run_distillation",
    "student_sample",
    "swapped_weights",
    "teacher_mid_features",
]


class TrainingError(RuntimeError):
    """Training stopped; the message names the cause and what to do."""


class Interrupted(RuntimeError):
    """Stopped on request (Ctrl-C); a checkpoint was saved."""


# --------------------------------------------------------------------------------------------- paths


@dataclass
class RunPaths:
    output_dir: pathlib.Path
    name: str
    work_dir: pathlib.Path | None = None  # the run folder's parent; None: output_dir

    @property
    def run_dir(self) -> pathlib.Path:
        return layout.run_dir(self.work_dir or self.output_dir, self.name)

    @property
    def final_lora(self) -> pathlib.Path:
        return layout.final_lora(self.output_dir, self.name)

    def stage_lora(self, k: int) -> pathlib.Path:
        return layout.stage_lora(self.output_dir, self.name, k)

    @property
    def log(self) -> pathlib.Path:
        return layout.log_file(self.run_dir)

    def sample_grid(self, k: int) -> pathlib.Path:
        return layout.sample_grid(self.run_dir, k)


# --------------------------------------------------------------------------------------------- the run


def _free_disk_check(paths: RunPaths, n_lora_params: int, n_stages: int, adversarial: bool) -> None:
    """The Train tab's preflight estimate (hypersd.train.estimate), checked again with the real parameter count."""
    from hypersd.train.estimate import check_disk, disk_needed_for

    need = disk_needed_for(n_lora_params, n_stages, adversarial)
    paths.output_dir.mkdir(parents=True, exist_ok=True)
    for folder in {paths.output_dir, paths.run_dir.parent}:
        message = check_disk(folder, need)
        if message:
            raise TrainingError(message)


def _is_oom(err: BaseException) -> bool:
    oom_type = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom_type is not None and isinstance(err, oom_type)) or "out of memory" in str(err).lower()


@dataclass
class RunResult:
    final_lora: pathlib.Path | None
    stage_loras: dict[int, pathlib.Path]
    steps: int
    losses: list[float]
    interrupted: bool = False


def run_distillation(
    cfg: DistillConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    stop_requested: Callable[[], bool] = lambda: False,
    progress: bool = True,
    stop_after_steps: int | None = None,
    save_on_stop: bool = True,
) -> RunResult:
    """Distil ``cfg.model`` into a few-step LoRA. ``stop_after_steps`` (tests) stops like Ctrl-C after that many steps."""
    from accelerate import Accelerator

    cfg.validate()
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum)
    main = accelerator.is_main_process
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world != accelerator.num_processes:
        raise TrainingError(
            f"Hyper-SD: {world} processes were launched but accelerate set up {accelerator.num_processes}; "
            "on a machine without GPUs use `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N ...` "
            "(accelerate's --cpu flag starts a single process unless MPI is configured)"
        )
    device = accelerator.device
    paths = RunPaths(pathlib.Path(cfg.output_dir), cfg.out, pathlib.Path(cfg.work_dir) if cfg.work_dir else None)
    existing = ckpt.latest_checkpoint(paths.run_dir) if paths.run_dir.exists() else None
    if resume and existing is None:
        raise TrainingError(f"Hyper-SD: --resume given but {paths.run_dir} holds no checkpoint; start without --resume")
    if not resume and not overwrite and (existing is not None or paths.final_lora.exists()):
        raise TrainingError(
            f"Hyper-SD: {paths.final_lora if paths.final_lora.exists() else paths.run_dir} already exists; "
            "use --resume to continue that run or --overwrite to start again"
        )
    if not resume and overwrite and main and paths.run_dir.exists():
        shutil.rmtree(paths.run_dir)
    accelerator.wait_for_everyone()

    def log(record: dict[str, Any]) -> None:
        if main:
            paths.run_dir.mkdir(parents=True, exist_ok=True)
            with open(paths.log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")

    # 1. data first: bad input is refused before any model is loaded
    if not cfg.data:
        raise TrainingError("Hyper-SD: --data is required: an image folder, a metadata.jsonl folder or a prompt list")
    dataset = discover_dataset(cfg.data)
    if dataset.kind == "images":
        validate_images(dataset)

    # 2. model
    weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[cfg.mixed_precision]
    model = load_model(cfg.model, cfg.base, cfg.tokenizer)
    cfg = cfg.resolved(model.base)
    if resume:
        saved_cfg = ckpt.load_state(existing)["config"]
        if saved_cfg.get("base_detected") not in (None, model.base):
            raise TrainingError(
                f"Hyper-SD: the checkpoint in {existing} was trained on an {saved_cfg['base_detected']} model, "
                f"but {cfg.model} is {model.base} (SD1.5/SDXL mismatch)"
            )
    torch.manual_seed(cfg.seed)
    _move(model.unet, device, weight_dtype)
    _move(model.vae, device, torch.float32 if model.base == "sdxl" else weight_dtype)  # SDXL's VAE overflows in fp16
    for enc in model.text_encoders:
        _move(enc, device, weight_dtype)
    acp = alphas_cumprod().to(device)
    grid = tscd.solver_grid(cfg.solver_steps).to(device)
    log(
        {
            "event": "start",
            "config": cfg.to_dict(),
            "base": model.base,
            "samples": len(dataset.samples),
            "processes": accelerator.num_processes,
        }
    )
    cache = build_cache(model, dataset, cfg, device, acp, log)
    buckets = {f"{w * vae_factor(model)}x{h * vae_factor(model)}": len(v) for (h, w), v in cache.buckets.items()}
    log({"event": "cached", "latents": len(cache.latents), "captions": len(cache.hidden), "buckets": buckets})
    model.vae.to("cpu")
    for enc in model.text_encoders:
        enc.to("cpu")

    # 3. LoRA, EMA, optimiser, discriminator
    unet = model.unet
    add_lora(unet, cfg.rank, cfg.alpha, cfg.lora_targets, seed=cfg.seed)
    named = lora_parameters(unet)
    for _, p in named:
        p.data = p.data.float()
    params = [p for _, p in named]
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    ema = [p.detach().clone() for p in params]
    _free_disk_check(
        paths, sum(p.numel() for p in params), len(cfg.stages), cfg.adversarial
    )  # every rank: all must stop together
    optimizer = _make_optimizer(cfg, params)
    disc = disc_opt = None
    if cfg.adversarial:
        disc = Discriminator(unet.config.block_out_channels[-1]).to(device)
        disc_opt = torch.optim.AdamW(disc.parameters(), lr=cfg.disc_lr, betas=(0.0, 0.99))
    if disc is not None:
        unet_wrapped, optimizer, disc_wrapped, disc_opt = accelerator.prepare(unet, optimizer, disc, disc_opt)
    else:
        unet_wrapped, optimizer = accelerator.prepare(unet, optimizer)
        disc_wrapped = None
    raw_unet = accelerator.unwrap_model(unet_wrapped)

    rank = accelerator.process_index
    data_gen = torch.Generator().manual_seed(cfg.seed * 1000 + 2 * rank + 1)
    noise_gen = torch.Generator().manual_seed(cfg.seed * 1000 + 2 * rank + 2)
    generators = {"data": data_gen, "noise": noise_gen}

    stage_index, step_in_stage, global_step = 0, 0, 0
    if resume:
        state = ckpt.load_state(existing)
        if [n for n, _ in named] != state["lora_names"]:
            raise TrainingError(
                f"Hyper-SD: the checkpoint in {existing} has a different LoRA layout (rank/targets/model); "
                "resume with the same settings and model"
            )
        if state["num_processes"] != accelerator.num_processes:
            raise TrainingError(
                f"Hyper-SD: the checkpoint was written by {state['num_processes']} processes, this run has "
                f"{accelerator.num_processes}; resume with the same number"
            )
        with torch.no_grad():
            for p, v in zip(params, state["lora"], strict=True):
                p.copy_(v)
            for e, v in zip(ema, state["ema"], strict=True):
                e.copy_(v)
        optimizer.load_state_dict(state["optimizer"])
        if disc is not None:
            accelerator.unwrap_model(disc_wrapped).load_state_dict(state["disc"])
            disc_opt.load_state_dict(state["disc_opt"])
        stage_index, step_in_stage, global_step = state["stage_index"], state["step_in_stage"], state["global_step"]
        ckpt.restore_rng(ckpt.load_rng(existing, rank), generators)
        log({"event": "resume", "from": str(existing), "global_step": global_step})

    def save_checkpoint(reason: str) -> pathlib.Path:
        folder = ckpt.checkpoint_folder(paths.run_dir, global_step)
        accelerator.wait_for_everyone()
        ckpt.save_rng(folder, rank, generators)
        accelerator.wait_for_everyone()
        if main:
            ckpt.save_state(
                folder,
                {
                    "lora_names": [n for n, _ in named],
                    "lora": [p.detach().cpu().clone() for p in params],
                    "ema": [e.cpu().clone() for e in ema],
                    "optimizer": optimizer.state_dict(),
                    "disc": accelerator.unwrap_model(disc_wrapped).state_dict() if disc is not None else None,
                    "disc_opt": disc_opt.state_dict() if disc is not None else None,
                    "stage_index": stage_index,
                    "step_in_stage": step_in_stage,
                    "global_step": global_step,
                    "num_processes": accelerator.num_processes,
                    "config": {**cfg.to_dict(), "base_detected": model.base},
                },
            )
            ckpt.mark_latest(paths.run_dir, folder)
            log({"event": "checkpoint", "reason": reason, "global_step": global_step, "path": str(folder)})
        accelerator.wait_for_everyone()
        return folder

    def export(path: pathlib.Path, k_done: int, stages_done: list[int]) -> None:
        weights = {n: (e if cfg.export_ema else p.detach()).cpu() for (n, p), e in zip(named, ema, strict=True)}
        meta = lora_metadata(
            base=model.base,
            output_name=path.stem,
            rank=cfg.rank,
            alpha=cfg.alpha,
            stages=stages_done,
            steps_trained=global_step,
            recommended_steps=k_done,
            gamma=cfg.recommended_gamma,
        )
        export_lora(path, weights, base=model.base, unet_config=raw_unet.config, metadata=meta, alpha=cfg.alpha)
        log({"event": "export", "path": str(path), "stages": stages_done})

    losses: list[float] = []
    stage_loras = {k: paths.stage_lora(k) for k in cfg.stages[:stage_index] if paths.stage_lora(k).exists()}
    samples_per_step = cfg.batch_size * cfg.grad_accum * accelerator.num_processes
    total_steps = cfg.steps_per_stage * len(cfg.stages)
    bar = None
    if progress and main:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=global_step, unit="step", dynamic_ncols=True)

    def student(x: torch.Tensor, t: torch.Tensor, c: dict) -> torch.Tensor:
        return unet_eps(unet_wrapped, x, t, c)

    def teacher(x: torch.Tensor, t: torch.Tensor, c: dict) -> torch.Tensor:
        with adapters_disabled(raw_unet):
            return unet_eps(raw_unet, x, t, c)

    def target(x: torch.Tensor, t: torch.Tensor, c: dict) -> torch.Tensor:
        with swapped_weights(params, ema):
            return unet_eps(raw_unet, x, t, c)

    steps_this_run = 0
    try:
        while stage_index < len(cfg.stages):
            k = cfg.stages[stage_index]
            w_mse, w_adv = tscd.stage_weights(k, cfg.stage_weights or None)
            if not cfg.adversarial:
                w_adv = 0.0
            while step_in_stage < cfg.steps_per_stage:
                started = time.perf_counter()
                lr = cfg.learning_rate * min(1.0, (global_step + 1) / max(1, cfg.warmup_steps))
                for group in optimizer.param_groups:
                    group["lr"] = lr
                record = _train_step(
                    cfg, accelerator, cache, data_gen, noise_gen, k, w_mse, w_adv,
                    student, teacher, target, raw_unet, unet_wrapped, disc_wrapped, optimizer, disc_opt,
                    params, acp, grid, device,
                )  # fmt: skip
                tscd.ema_update(ema, params, cfg.ema_decay)
                step_in_stage += 1
                global_step += 1
                steps_this_run += 1
                losses.append(record["loss"])
                elapsed = time.perf_counter() - started
                record.update(
                    event="step", stage=k, step=global_step, step_in_stage=step_in_stage, lr=lr,
                    samples_per_s=round(samples_per_step / max(elapsed, 1e-9), 3),
                )  # fmt: skip
                if torch.cuda.is_available():
                    record["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
                if global_step % cfg.log_every == 0:
                    log(record)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(stage=f"k={k}", loss=f"{record['loss']:.4g}", sps=f"{record['samples_per_s']:.2f}")
                stop_now = stop_requested() or (stop_after_steps is not None and steps_this_run >= stop_after_steps)
                if _any_process(accelerator, stop_now):
                    if save_on_stop:
                        save_checkpoint("interrupted")
                    log({"event": "interrupted", "global_step": global_step})
                    raise Interrupted(
                        f"Hyper-SD: stopped at step {global_step}; a checkpoint was saved in {paths.run_dir}. "
                        "Continue with the same command plus --resume."
                    )
                if global_step % cfg.checkpoint_every == 0 and step_in_stage < cfg.steps_per_stage:
                    save_checkpoint("periodic")
            # stage done: its LoRA (good at k steps), a sample grid, a checkpoint
            stages_done = list(cfg.stages[: stage_index + 1])
            if main:
                export(paths.stage_lora(k), k, stages_done)
                if cache.sample_prompts:
                    save_sample_grid(model, raw_unet, cache, paths.sample_grid(k), acp, device, cfg)
            stage_loras[k] = paths.stage_lora(k)
            log({"event": "stage_end", "stage": k, "global_step": global_step})
            stage_index += 1
            step_in_stage = 0
            save_checkpoint(f"stage k={k} done")
        if main:
            # the final file appears only now, atomically: an unfinished run never leaves it behind
            last = cfg.stages[-1]
            export(paths.final_lora, last, list(cfg.stages))
            log({"event": "done", "global_step": global_step, "final": str(paths.final_lora)})
        accelerator.wait_for_everyone()
    except Interrupted:
        if bar is not None:
            bar.close()
        return RunResult(None, stage_loras, global_step, losses, interrupted=True)
    except ExportError as err:
        log({"event": "error", "message": str(err)})
        raise TrainingError(str(err)) from err
    except RuntimeError as err:  # torch.cuda.OutOfMemoryError is a RuntimeError
        if isinstance(err, TrainingError) or not _is_oom(err):
            raise
        message = (
            f"Hyper-SD: out of memory at stage step {step_in_stage} (batch {cfg.batch_size}, resolution "
            f"{cfg.resolution}); lower --batch-size or --resolution, or add --gradient-checkpointing / "
            "--mixed-precision bf16. The last checkpoint is kept: continue with --resume."
        )
        log({"event": "error", "message": message})
        raise TrainingError(message) from err
    finally:
        if bar is not None:
            bar.close()
    return RunResult(paths.final_lora, stage_loras, global_step, losses)


def _move(module: torch.nn.Module, device: Any, dtype: torch.dtype) -> None:
    """Move, and cast only when the dtype changes (diffusers warns on every dtype-carrying ``.to``)."""
    module.to(device)
    if next(module.parameters()).dtype != dtype:
        module.to(dtype)


def _any_process(accelerator: Any, flag: bool) -> bool:
    if accelerator.num_processes == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(value, reduction="sum").item() > 0)


def _make_optimizer(cfg: DistillConfig, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    if cfg.use_8bit_adam:
        try:
            import bitsandbytes as bnb
        except ImportError as err:
            raise TrainingError("Hyper-SD: --use-8bit-adam needs `pip install bitsandbytes`") from err
        return bnb.optim.AdamW8bit(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


def _train_step(
    cfg, accelerator, cache, data_gen, noise_gen, k, w_mse, w_adv,
    student, teacher, target, raw_unet, unet_wrapped, disc, optimizer, disc_opt, params, acp, grid, device,
) -> dict[str, float]:  # fmt: skip
    """One optimiser step (grad_accum micro-batches) of TSCD.md's training step; returns loss terms."""
    sums = {"loss": 0.0, "loss_mse": 0.0, "loss_adv": 0.0, "loss_disc": 0.0}
    for _ in range(cfg.grad_accum):
        with accelerator.accumulate(unet_wrapped):
            x0, cond, uncond = sample_batch(cache, cfg.batch_size, data_gen, device)
            omega = tscd.sample_omega(cfg.batch_size, cfg.omega_min, cfg.omega_max, generator=noise_gen).to(device)
            with accelerator.autocast():
                out = tscd.tscd_step_targets(
                    x0, cond, uncond, k, student=student, teacher=teacher, target=target, acp=acp, grid=grid,
                    omega=omega, generator=noise_gen, offset_noise=cfg.offset_noise,
                )  # fmt: skip
                pred, tgt = out["pred"].float(), out["target"].float()
                if cfg.loss == "huber":
                    loss_mse = tscd.pseudo_huber(pred, tgt, cfg.huber_c)
                else:
                    loss_mse = torch.nn.functional.mse_loss(pred, tgt)
                loss = w_mse * loss_mse
                loss_adv = torch.zeros((), device=device)
                if w_adv > 0 and disc is not None:
                    head = accelerator.unwrap_model(disc)
                    head.requires_grad_(False)
                    both = tscd.default_cat_cond(cond, cond)
                    feats = teacher_mid_features(
                        raw_unet, torch.cat([pred, tgt]), torch.cat([out["t_end"], out["t_end"]]), both
                    )
                    fake_feats, real_feats = feats[: pred.shape[0]], feats[pred.shape[0] :].detach()
                    loss_adv = -head(fake_feats).mean()  # hinge GAN, generator side
                    head.requires_grad_(True)
                    loss = loss + w_adv * loss_adv
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if w_adv > 0 and disc is not None:
                with accelerator.autocast():
                    d_real, d_fake = disc(real_feats), disc(fake_feats.detach())
                    loss_disc = torch.relu(1 - d_real).mean() + torch.relu(1 + d_fake).mean()
                accelerator.backward(loss_disc)
                disc_opt.step()
                disc_opt.zero_grad(set_to_none=True)
                sums["loss_disc"] += float(loss_disc.detach()) / cfg.grad_accum
        sums["loss"] += float(loss.detach()) / cfg.grad_accum
        sums["loss_mse"] += float(loss_mse.detach()) / cfg.grad_accum
        sums["loss_adv"] += float(loss_adv.detach()) / cfg.grad_accum
    if accelerator.num_processes > 1:
        values = torch.tensor([sums[k] for k in sums], device=device)
        values = accelerator.reduce(values, reduction="mean")
        sums = dict(zip(sums, values.tolist(), strict=True))
    return {k: round(v, 6) for k, v in sums.items()}
