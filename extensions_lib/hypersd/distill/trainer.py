"""The distillation trainer: one explicit state object, stages behind one small interface, one loop.

A run is a list of stages (``hypersd.distill.config``): TSCD's k-segment stages ("8", "4", "2", "1"), then score
distillation ("dmd") and human feedback ("feedback"). Each stage object implements :class:`Stage`:

* ``prepare(state)``: set up what the stage needs (a second adapter, its optimiser, paired data...);
* ``before_step(state)``: work on the stage's own models before a student update (the fake score's updates);
* ``loss(state, batch)``: the student's loss for one micro-batch (the trainer does backward, sync, step, EMA);
* ``after_loss(state, batch, out)``: updates that use the student's outputs (the discriminator's);
* ``state_dict()`` / ``load_state_dict()``: what a checkpoint must hold beyond the trainer's state;
* ``export_info()``: how its LoRA is to be used until the quality report has measured it.

The trainer owns the student LoRA, its EMA, its optimiser, the discriminator (shared by the stages that use the
adversarial term), the RNG and the counters; all of it is in :class:`TrainerState` and in every checkpoint.
Gradients of the LoRA weights are averaged across processes by hand (the base UNet is frozen and identical
everywhere), so several adapters and optimisers on the one UNet work under ``accelerate launch``.
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from hypersd import tscd

from . import checkpoint as ckpt
from .cache import CachedData, sample_batch
from .config import DistillConfig
from .models import SDModel, unet_eps
from .views import Discriminator, active_adapter, adapters_disabled, swapped_weights


@dataclass
class Batch:
    x0: torch.Tensor
    cond: dict[str, torch.Tensor]
    uncond: dict[str, torch.Tensor]
    prompts: list[str] = field(default_factory=list)


@dataclass
class StepOutput:
    loss: torch.Tensor  # the student's loss (with grad)
    terms: dict[str, torch.Tensor]  # logged parts of it
    scratch: dict[str, Any] = field(default_factory=dict)  # what after_loss needs (features, samples)


@dataclass(frozen=True)
class ExportInfo:
    kind: str  # "per-step" (a TSCD stage), "unified" (score distillation, feedback)
    recommended_steps: int
    gamma: float | None  # None: the config's recommended_gamma


class Stage:
    """One part of the recipe; subclasses override what they need (see the module docstring)."""

    name: str = ""
    prepared: bool = False

    @property
    def label(self) -> str:
        return f"k={self.name}" if self.name.isdigit() else self.name

    def ensure_prepared(self, state: TrainerState) -> None:
        """``prepare`` once per run (also for a resumed run, before the checkpoint's stage state is loaded)."""
        if not self.prepared:
            self.prepare(state)
            self.prepared = True

    def restore(self, state: TrainerState, saved: dict[str, Any]) -> None:
        """Set up a resumed stage from its checkpointed ``saved`` state: ``prepare``, then ``load_state_dict``."""
        self.ensure_prepared(state)
        self.load_state_dict(saved)

    def check(self, model: SDModel, captions: list[str]) -> None:
        """Refuse, before any training, what would fail in this stage (a reward model that does not load or cannot
        score the run's ``captions``...)."""

    @property
    def log_id(self) -> int | str:
        """How the log names the stage: k (an int) for TSCD stages, the name for the others."""
        return int(self.name) if self.name.isdigit() else self.name

    def prepare(self, state: TrainerState) -> None:
        """Set the stage up; must not draw from ``state.generators`` (a resumed run prepares again)."""

    def before_step(self, state: TrainerState) -> dict[str, float]:
        return {}

    def loss(self, state: TrainerState, batch: Batch) -> StepOutput:
        raise NotImplementedError

    def after_loss(self, state: TrainerState, batch: Batch, out: StepOutput) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def export_info(self) -> ExportInfo:
        raise NotImplementedError


@dataclass
class TrainerState:
    cfg: DistillConfig
    accelerator: Any
    model: SDModel
    cache: CachedData
    acp: torch.Tensor
    grid: torch.Tensor
    named: list[tuple[str, torch.nn.Parameter]]  # the student's LoRA weights
    ema: list[torch.Tensor]
    optimizer: Any
    generators: dict[str, torch.Generator]
    disc: Discriminator | None = None
    disc_opt: Any = None
    stage_index: int = 0
    step_in_stage: int = 0
    global_step: int = 0
    log: Callable[[dict[str, Any]], None] = lambda record: None  # the run's JSON-lines log (the main process)

    @property
    def unet(self) -> Any:
        return self.model.unet

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return [p for _, p in self.named]

    # views of the one UNet ------------------------------------------------------------------------------
    def student(self, x: torch.Tensor, t: torch.Tensor, c: dict) -> torch.Tensor:
        return unet_eps(self.unet, x, t, c)

    def teacher(self, x: torch.Tensor, t: torch.Tensor, c: dict) -> torch.Tensor:
        with adapters_disabled(self.unet):
            return unet_eps(self.unet, x, t, c)

    def target(self, x: torch.Tensor, t: torch.Tensor, c: dict) -> torch.Tensor:
        with swapped_weights(self.params, self.ema):
            return unet_eps(self.unet, x, t, c)

    def adapter(self, name: str) -> Callable[[torch.Tensor, torch.Tensor, dict], torch.Tensor]:
        def call(x: torch.Tensor, t: torch.Tensor, c: dict) -> torch.Tensor:
            with active_adapter(self.unet, name):
                return unet_eps(self.unet, x, t, c)

        return call

    # updates ---------------------------------------------------------------------------------------------
    def batch(self, size: int | None = None) -> Batch:
        prompts: list[str] = []
        x0, cond, uncond = sample_batch(
            self.cache, size or self.cfg.batch_size, self.generators["data"], self.device, prompts
        )
        return Batch(x0, cond, uncond, prompts)

    def apply_update(self, params: list[torch.nn.Parameter], optimizer: Any, clip: float | None = 1.0) -> None:
        """Average the gradients over the processes, clip, step, clear (the LoRA weights' only path to change)."""
        sync_gradients(self.accelerator, params)
        if clip is not None:
            if getattr(self.accelerator, "scaler", None) is not None:
                self.accelerator.unscale_gradients(optimizer=optimizer)
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def any_process(self, flag: bool) -> bool:
        if self.accelerator.num_processes == 1:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        return bool(self.accelerator.reduce(value, reduction="sum").item() > 0)

    def discriminator(self) -> tuple[Discriminator, Any]:
        """The adversarial head on frozen-teacher features, made on first use (TSCD's and DMD's GAN terms share it)."""
        if self.disc is None:
            self.disc = Discriminator(self.unet.config.block_out_channels[-1]).to(self.device)
            self.disc_opt = self.accelerator.prepare(
                torch.optim.AdamW(self.disc.parameters(), lr=self.cfg.disc_lr, betas=(0.0, 0.99))
            )
        return self.disc, self.disc_opt


def sync_gradients(accelerator: Any, params: list[torch.nn.Parameter]) -> None:
    """All-reduce (mean) the gradients of ``params`` in one flat buffer; a missing gradient counts as zero."""
    if accelerator.num_processes == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = accelerator.reduce(torch.cat([g.reshape(-1).float() for g in grads]), reduction="mean")
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(g).to(g.dtype)
        offset += n


def train_step(state: TrainerState, stage: Stage) -> dict[str, float]:
    """One student update (``grad_accum`` micro-batches) of ``stage``, with its own updates around it."""
    cfg, accelerator = state.cfg, state.accelerator
    sums: dict[str, float] = dict(stage.before_step(state))
    for _ in range(cfg.grad_accum):
        batch = state.batch()
        with accelerator.autocast():
            out = stage.loss(state, batch)
        accelerator.backward(out.loss / cfg.grad_accum)
        values = {"loss": out.loss, **out.terms}
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach()) / cfg.grad_accum
        for key, value in stage.after_loss(state, batch, out).items():
            sums[key] = sums.get(key, 0.0) + value / cfg.grad_accum
    state.apply_update(state.params, state.optimizer)
    tscd.ema_update(state.ema, state.params, cfg.ema_decay)
    if accelerator.num_processes > 1:
        keys = sorted(sums)
        values = accelerator.reduce(torch.tensor([sums[k] for k in keys], device=state.device), reduction="mean")
        sums = dict(zip(keys, values.tolist(), strict=True))
    return {k: round(v, 6) for k, v in sums.items()}


# --------------------------------------------------------------------------------------------- checkpoints


def save_checkpoint(
    state: TrainerState, stage_states: dict[str, Any], run_dir: pathlib.Path, config: dict[str, Any], log: Callable
) -> pathlib.Path:
    """Every process writes its RNG; the main one the state (LoRA, EMA, optimisers, stage extras, counters)."""
    accelerator = state.accelerator
    folder = ckpt.checkpoint_folder(run_dir, state.global_step)
    accelerator.wait_for_everyone()
    ckpt.save_rng(folder, accelerator.process_index, state.generators)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        ckpt.save_state(
            folder,
            {
                "lora_names": [n for n, _ in state.named],
                "lora": [p.detach().cpu().clone() for p in state.params],
                "ema": [e.cpu().clone() for e in state.ema],
                "optimizer": state.optimizer.state_dict(),
                "disc": state.disc.state_dict() if state.disc is not None else None,
                "disc_opt": state.disc_opt.state_dict() if state.disc is not None else None,
                "stage_states": stage_states,
                "stage_index": state.stage_index,
                "step_in_stage": state.step_in_stage,
                "global_step": state.global_step,
                "num_processes": accelerator.num_processes,
                "config": config,
            },
        )
        ckpt.mark_latest(run_dir, folder)
        log({"event": "checkpoint", "global_step": state.global_step, "path": str(folder)})
    accelerator.wait_for_everyone()
    return folder


def restore_checkpoint(state: TrainerState, saved: dict[str, Any], folder: pathlib.Path) -> None:
    """Load a checkpoint's trainer state (the stages load their own part of it)."""
    with torch.no_grad():
        for p, v in zip(state.params, saved["lora"], strict=True):
            p.copy_(v)
        for e, v in zip(state.ema, saved["ema"], strict=True):
            e.copy_(v)
    state.optimizer.load_state_dict(saved["optimizer"])
    if saved.get("disc") is not None:
        disc, disc_opt = state.discriminator()
        disc.load_state_dict(saved["disc"])
        disc_opt.load_state_dict(saved["disc_opt"])
    state.stage_index, state.step_in_stage = saved["stage_index"], saved["step_in_stage"]
    state.global_step = saved["global_step"]
    ckpt.restore_rng(ckpt.load_rng(folder, state.accelerator.process_index), state.generators)


@contextlib.contextmanager
def frozen(module: torch.nn.Module) -> Iterator[None]:
    """``module``'s weights get no gradient inside (the generator side of a GAN term)."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)
