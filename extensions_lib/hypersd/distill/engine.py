"""The distillation engine: ``run_distillation(cfg)`` runs the stages of ``cfg`` on a LoRA of the UNet.

The order of a run: settings, data and model are checked and loaded (every refusal happens here, before the first
training step), latents and text embeddings are cached, the stages run (``hypersd.distill.trainer``), each stage's
LoRA is exported as it finishes, the quality report measures them (``hypersd.distill.report``) and writes the
measured settings into their metadata, and only then the final LoRA appears.
"""

from __future__ import annotations

import math
import os
import pathlib
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from hypersd import tscd
from hypersd.lora_metadata import lora_metadata
from hypersd.schedules import alphas_cumprod

from . import checkpoint as ckpt
from .cache import CachedData, build_cache, vae_factor
from .config import DMD, DistillConfig
from .data import discover_dataset, validate_images
from .export import ExportError, check_keys_map_in_webui, export_lora
from .lora import add_lora, kohya_module_key, lora_parameters
from .models import load_model
from .progress_bar import ProgressBar
from .run import Interrupted, RunPaths, RunResult, TrainingError, _is_oom, _Run, build_stages
from .samples import save_sample_grid, student_sample
from .trainer import Stage, TrainerState, restore_checkpoint, save_checkpoint, train_step
from .views import Discriminator, adapters_disabled, merged_adapter, swapped_weights, teacher_mid_features

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


# --------------------------------------------------------------------------------------------- set-up


def _check_processes(accelerator: Any) -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world != accelerator.num_processes:
        raise TrainingError(
            f"Hyper-SD: {world} processes were launched but accelerate set up {accelerator.num_processes}; "
            "on a machine without GPUs use `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N ...` "
            "(accelerate's --cpu flag starts a single process unless MPI is configured)"
        )


def _existing_run(run: _Run, resume: bool, overwrite: bool) -> pathlib.Path | None:
    paths = run.paths
    existing = ckpt.latest_checkpoint(paths.run_dir) if paths.run_dir.exists() else None
    if resume and existing is None:
        raise TrainingError(f"Hyper-SD: --resume given but {paths.run_dir} holds no checkpoint; start without --resume")
    if not resume and not overwrite and (existing is not None or paths.final_lora.exists()):
        raise TrainingError(
            f"Hyper-SD: {paths.final_lora if paths.final_lora.exists() else paths.run_dir} already exists; "
            "use --resume to continue that run or --overwrite to start again"
        )
    if not resume and overwrite and run.main and paths.run_dir.exists():
        shutil.rmtree(paths.run_dir)
    run.accelerator.wait_for_everyone()
    return existing if resume else None


def _check_lora_maps(unet: Any, base: str) -> None:
    """Refuse a UNet whose LoRA keys WebUI would not load (before training, not at the first export)."""
    names = [n for n, _ in lora_parameters(unet)]
    modules = sorted({n.split(".lora_")[0] for n in names})
    keys = [f"{kohya_module_key(m, base, unet.config)}.lora_down.weight" for m in modules]
    try:
        check_keys_map_in_webui(keys, base, unet.config, modules)
    except (ExportError, ValueError) as err:
        raise TrainingError(
            f"{err}. The UNet's blocks are not laid out like {base.upper()}'s, so its LoRA could not be used in WebUI; "
            "distil a standard SD1.5/SDXL checkpoint"
        ) from err


def _free_disk_check(
    paths: RunPaths, n_params: int, n_stages: int, adversarial: bool, fake_score: bool = False
) -> None:
    """The Train tab's preflight estimate (hypersd.train.estimate), checked again with the real parameter count."""
    from hypersd.train.estimate import check_disk, disk_needed_for

    need = disk_needed_for(n_params, n_stages, adversarial, fake_score=fake_score)
    paths.output_dir.mkdir(parents=True, exist_ok=True)
    for folder in {paths.output_dir, paths.run_dir.parent}:
        message = check_disk(folder, need)
        if message:
            raise TrainingError(message)


def _make_optimizer(cfg: DistillConfig, params: list[torch.Tensor], lr: float | None = None) -> torch.optim.Optimizer:
    if cfg.use_8bit_adam:
        try:
            import bitsandbytes as bnb
        except ImportError as err:
            raise TrainingError("Hyper-SD: --use-8bit-adam needs `pip install bitsandbytes`") from err
        return bnb.optim.AdamW8bit(params, lr=lr or cfg.learning_rate, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=lr or cfg.learning_rate, weight_decay=cfg.weight_decay)


def _move(module: torch.nn.Module, device: Any, dtype: torch.dtype) -> None:
    """Move, and cast only when the dtype changes (diffusers warns on every dtype-carrying ``.to``)."""
    module.to(device)
    if next(module.parameters()).dtype != dtype:
        module.to(dtype)


def _setup(run: _Run, existing: pathlib.Path | None) -> TrainerState:
    """Data, model, cache, LoRA, optimiser and stages; every refusal happens in here."""
    cfg = run.cfg
    if not cfg.data:
        raise TrainingError("Hyper-SD: --data is required: an image folder, a metadata.jsonl folder or a prompt list")
    dataset = discover_dataset(cfg.data)
    if dataset.kind == "images":
        validate_images(dataset)
    model = load_model(cfg.model, cfg.base, cfg.tokenizer)
    run.base = model.base
    cfg = run.cfg = cfg.resolved(model.base)
    saved = ckpt.load_state(existing) if existing is not None else None
    if saved and saved["config"].get("base_detected") not in (None, model.base):
        raise TrainingError(
            f"Hyper-SD: the checkpoint in {existing} was trained on an {saved['config']['base_detected']} model, "
            f"but {cfg.model} is {model.base} (SD1.5/SDXL mismatch)"
        )
    unet = model.unet
    multiple = vae_factor(model) * 2 ** (len(unet.config.block_out_channels) - 1)
    if int(cfg.resolution) % multiple:
        raise TrainingError(
            f"Hyper-SD: resolution must be a multiple of {multiple} for this model, got {cfg.resolution}"
        )
    add_lora(unet, cfg.rank, cfg.alpha, cfg.lora_targets, seed=cfg.seed)
    _check_lora_maps(unet, model.base)
    run.stages = build_stages(cfg)
    for stage in run.stages:
        stage.check(model, dataset.captions)  # e.g. the reward model loads and reads the captions, before training
    named = lora_parameters(unet)
    gan = cfg.adversarial or (DMD in cfg.stages and cfg.dmd_adversarial_weight > 0)
    n_params = sum(p.numel() for _, p in named)
    _free_disk_check(run.paths, n_params, len(cfg.stages), gan, DMD in cfg.stages)  # every rank: all stop together
    return _state(run, model, dataset, named, saved, existing)


def _state(run: _Run, model: Any, dataset: Any, named: list, saved: dict | None, existing: Any) -> TrainerState:
    cfg, accelerator = run.cfg, run.accelerator
    device = accelerator.device
    weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[cfg.mixed_precision]
    torch.manual_seed(cfg.seed)
    _move(model.unet, device, weight_dtype)
    _move(model.vae, device, torch.float32 if model.base == "sdxl" else weight_dtype)  # SDXL's VAE overflows in fp16
    for enc in model.text_encoders:
        _move(enc, device, weight_dtype)
    for _, p in lora_parameters(model.unet, None):  # every adapter's weights train in fp32
        p.data = p.data.float()
    acp = alphas_cumprod().to(device)
    run.log({"event": "start", "config": cfg.to_dict(), "base": model.base, "samples": len(dataset.samples),
             "processes": accelerator.num_processes, "total_steps": cfg.total_steps})  # fmt: skip
    with adapters_disabled(model.unet):  # prompt-list mode samples x0 latents with the teacher
        cache = build_cache(model, dataset, cfg, device, acp, run.log)
    factor = vae_factor(model)
    buckets = {f"{w * factor}x{h * factor}": len(v) for (h, w), v in cache.buckets.items()}
    run.log({"event": "cached", "latents": len(cache.latents), "captions": len(cache.hidden), "buckets": buckets})
    model.vae.to("cpu")
    for enc in model.text_encoders:
        enc.to("cpu")
    if cfg.gradient_checkpointing:
        model.unet.enable_gradient_checkpointing()
    rank = accelerator.process_index
    state = TrainerState(
        cfg=cfg, accelerator=accelerator, model=model, cache=cache, acp=acp,
        grid=tscd.solver_grid(cfg.solver_steps, include_top=cfg.trailing_grid).to(device), named=named,
        ema=[p.detach().clone() for _, p in named],
        optimizer=accelerator.prepare(_make_optimizer(cfg, [p for _, p in named])),
        generators={"data": torch.Generator().manual_seed(cfg.seed * 1000 + 2 * rank + 1),
                    "noise": torch.Generator().manual_seed(cfg.seed * 1000 + 2 * rank + 2)},
        log=run.log,
    )  # fmt: skip
    if cfg.adversarial or (DMD in cfg.stages and cfg.dmd_adversarial_weight > 0):
        state.discriminator()
    if saved is not None:
        _resume(run, state, saved, existing)
    return state


def _resume(run: _Run, state: TrainerState, saved: dict[str, Any], existing: pathlib.Path) -> None:
    if [n for n, _ in state.named] != saved["lora_names"]:
        raise TrainingError(
            f"Hyper-SD: the checkpoint in {existing} has a different LoRA layout (rank/targets/model); "
            "resume with the same settings and model"
        )
    if saved["num_processes"] != state.accelerator.num_processes:
        raise TrainingError(
            f"Hyper-SD: the checkpoint was written by {saved['num_processes']} processes, this run has "
            f"{state.accelerator.num_processes}; resume with the same number"
        )
    if [str(s) for s in saved["config"].get("stages", [])] != list(run.cfg.stages):
        raise TrainingError(
            f"Hyper-SD: the checkpoint in {existing} is of a run with stages {saved['config'].get('stages')}, "
            f"this one has {list(run.cfg.stages)}; resume with the same stages"
        )
    restore_checkpoint(state, saved, existing)
    stage_states = saved.get("stage_states") or {}
    # a run whose stages are all done has only its report and final LoRA left: no stage is set up again
    for stage in run.stages[: state.stage_index + 1] if state.stage_index < len(run.stages) else []:
        if stage.name in stage_states:
            stage.restore(state, stage_states[stage.name])
    run.log({"event": "resume", "from": str(existing), "global_step": state.global_step})


# --------------------------------------------------------------------------------------------- the run


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
    """Distil ``cfg.model`` into few-step LoRAs. ``stop_after_steps`` (tests) stops like Ctrl-C after that many steps."""
    from accelerate import Accelerator

    cfg.validate()
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision)
    _check_processes(accelerator)
    run = _Run(cfg, accelerator)
    existing = _existing_run(run, resume, overwrite)
    if progress:
        run.echo = _print_line  # the set-up's lines, before the bar
    state = run.state = _setup(run, existing)
    result = RunResult(None, _finished_stage_loras(run, state), state.global_step, [])
    bar = ProgressBar(run.cfg.total_steps, state.global_step, enabled=progress and run.main)
    run.echo = bar.write if progress else None
    try:
        _train(run, state, result, bar, stop_requested, stop_after_steps, save_on_stop)
        _finish(run, state, result)
    except Interrupted:
        result.interrupted = True
    except ExportError as err:
        run.log({"event": "error", "message": str(err)})
        raise TrainingError(str(err)) from err
    except RuntimeError as err:  # torch.cuda.OutOfMemoryError is a RuntimeError
        if isinstance(err, TrainingError) or not _is_oom(err):
            raise
        message = (
            f"Hyper-SD: out of memory at stage step {state.step_in_stage} (batch {run.cfg.batch_size}, resolution "
            f"{run.cfg.resolution}); lower --batch-size or --resolution, or add --gradient-checkpointing / "
            "--mixed-precision bf16. The last checkpoint is kept: continue with --resume."
        )
        run.log({"event": "error", "message": message})
        raise TrainingError(message) from err
    finally:
        bar.close()
    result.steps = state.global_step
    return result


def _print_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _finished_stage_loras(run: _Run, state: TrainerState) -> dict[int | str, pathlib.Path]:
    done = run.stages[: state.stage_index]
    return {s.log_id: run.paths.stage_lora(s.name) for s in done if run.paths.stage_lora(s.name).exists()}


def _checkpoint(run: _Run, state: TrainerState) -> None:
    run_dir = run.paths.run_dir
    stage_states = {s.name: s.state_dict() for s in run.stages if s.prepared}
    save_checkpoint(state, stage_states, run_dir, run.config_record(), run.log)


def learning_rate(cfg: DistillConfig, global_step: int, step_in_stage: int, stage_steps: int) -> float:
    """Linear warm-up over the run's first ``warmup_steps``, then the stage's schedule (``lr_schedule``)."""
    lr = cfg.learning_rate * min(1.0, (global_step + 1) / max(1, cfg.warmup_steps))
    if cfg.lr_schedule == "cosine" and stage_steps > 1:
        progress = step_in_stage / (stage_steps - 1)
        lr *= cfg.lr_end_ratio + (1 - cfg.lr_end_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return lr


def _train(run, state, result, bar, stop_requested, stop_after_steps, save_on_stop) -> None:
    cfg = run.cfg
    steps_this_run = 0
    samples_per_step = cfg.batch_size * cfg.grad_accum * state.accelerator.num_processes
    while state.stage_index < len(run.stages):
        stage = run.stages[state.stage_index]
        stage.ensure_prepared(state)
        while state.step_in_stage < cfg.steps_of(stage.name):
            started = time.perf_counter()
            lr = learning_rate(cfg, state.global_step, state.step_in_stage, cfg.steps_of(stage.name))
            for group in state.optimizer.param_groups:
                group["lr"] = lr
            record = train_step(state, stage)
            state.step_in_stage += 1
            state.global_step += 1
            steps_this_run += 1
            result.losses.append(record["loss"])
            elapsed = time.perf_counter() - started
            record.update(
                event="step", stage=stage.log_id, step=state.global_step, step_in_stage=state.step_in_stage, lr=lr,
                samples_per_s=round(samples_per_step / max(elapsed, 1e-9), 3),
            )  # fmt: skip
            if torch.cuda.is_available():
                record["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
            result.records.append(record)
            if state.global_step % cfg.log_every == 0:
                run.log(record)
            bar.update(record, stage.label)
            stop_now = stop_requested() or (stop_after_steps is not None and steps_this_run >= stop_after_steps)
            if state.any_process(stop_now):
                if save_on_stop:
                    _checkpoint(run, state)
                run.log({"event": "interrupted", "global_step": state.global_step})
                raise Interrupted(
                    f"Hyper-SD: stopped at step {state.global_step}; a checkpoint was saved in {run.paths.run_dir}. "
                    "Continue with the same command plus --resume."
                )
            if state.global_step % cfg.checkpoint_every == 0 and state.step_in_stage < cfg.steps_of(stage.name):
                _checkpoint(run, state)
        _end_stage(run, state, stage, result)


def _end_stage(run: _Run, state: TrainerState, stage: Stage, result: RunResult) -> None:
    """The stage's LoRA (good at its step counts), a sample grid, a checkpoint."""
    done = [s.name for s in run.stages[: state.stage_index + 1]]
    if run.main:
        _export(run, state, run.paths.stage_lora(stage.name), stage, done)
        if state.cache.sample_prompts:
            with merged_adapter(state.unet):
                save_sample_grid(state.model, state.unet, state.cache, run.paths.sample_grid(stage.name), state.acp,
                                 state.device, run.cfg)  # fmt: skip
    result.stage_loras[stage.log_id] = run.paths.stage_lora(stage.name)
    run.log({"event": "stage_end", "stage": stage.log_id, "global_step": state.global_step})
    state.stage_index += 1
    state.step_in_stage = 0
    _checkpoint(run, state)


def _export(
    run: _Run, state: TrainerState, path: pathlib.Path, stage: Stage, done: list[str], measured: dict | None = None
) -> None:
    cfg = run.cfg
    info = stage.export_info()
    ema = cfg.export_ema or (info.kind == "unified" and cfg.unified_export_ema)
    weights = {n: (e if ema else p.detach()).cpu() for (n, p), e in zip(state.named, state.ema, strict=True)}
    settings = measured or {}
    meta = lora_metadata(
        base=run.base, output_name=path.stem, rank=cfg.rank, alpha=cfg.alpha, stages=done,
        steps_trained=state.global_step, recommended_steps=settings.get("steps", info.recommended_steps),
        gamma=settings.get("gamma", cfg.recommended_gamma if info.gamma is None else info.gamma),
        sampler=settings.get("sampler"), scheduler=settings.get("scheduler"), cfg_scale=settings.get("cfg"),
        kind=info.kind, measured=bool(measured),
    )  # fmt: skip
    export_lora(path, weights, base=run.base, unet_config=state.unet.config, metadata=meta, alpha=cfg.alpha)
    run.log({"event": "export", "path": str(path), "stages": [int(s) if s.isdigit() else s for s in done]})


def _finish(run: _Run, state: TrainerState, result: RunResult) -> None:
    """The quality report, then the final LoRA (atomically, with the measured settings): an unfinished run never
    leaves a finished-looking file behind."""
    measured: dict[str, dict[str, Any]] = {}
    if run.main and run.cfg.report != "off":
        from .report import run_quality_report

        result.report = run_quality_report(run, state, result.stage_loras)
        measured = result.report.get("recommended", {})
    if run.main:
        last = run.stages[-1]
        done = [s.name for s in run.stages]
        _export(run, state, run.paths.final_lora, last, done, measured.get(last.name))
        result.final_lora = run.paths.final_lora
        run.log({"event": "done", "global_step": state.global_step, "final": str(run.paths.final_lora)})
    else:
        result.final_lora = run.paths.final_lora
    state.accelerator.wait_for_everyone()
