"""Training for the demo: the tiny teacher (plain eps-prediction with label dropout), and LoRA distillation
with TSCD (stages k = 8 -> 4 -> 2 -> 1) or one-shot consistency distillation (k = 1 only).

All TSCD math comes from ``hypersd.tscd``; ᾱ from ``hypersd.schedules``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from hypersd import tscd
from hypersd.demo.model import LoRAModel, TinyUNet, UNetConfig, init_lora

Log = Callable[[str], None]


# --------------------------------------------------------------------------------------------- teacher


@dataclass(frozen=True)
class TeacherConfig:
    steps: int = 1500  # the shipped assets/teacher.safetensors
    batch: int = 128
    lr: float = 2e-3
    label_dropout: float = 0.15  # unconditional examples, so that classifier-free guidance exists
    ema_decay: float = 0.999
    unet: UNetConfig = UNetConfig()


def train_teacher(
    images: torch.Tensor,
    labels: torch.Tensor,
    acp: torch.Tensor,
    config: TeacherConfig,
    seed: int,
    log: Log = print,
) -> tuple[TinyUNet, list[float]]:
    """Train the eps-prediction teacher; returns its EMA weights (frozen, eval mode) and the loss per step."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = TinyUNet(config.unet)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=0.0)
    warmup = max(1, config.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * i / config.steps)).item()),
    )
    null = config.unet.num_classes
    losses: list[float] = []
    start = time.time()
    for step in range(config.steps):
        idx = torch.randint(0, len(images), (config.batch,), generator=gen)
        x0, y = images[idx], labels[idx].clone()
        y[torch.rand(config.batch, generator=gen) < config.label_dropout] = null
        eps = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, len(acp), (config.batch,), generator=gen)
        loss = F.mse_loss(net(tscd.add_noise(x0, eps, t, acp), t, y), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        tscd.ema_update(ema.parameters(), net.parameters(), min(config.ema_decay, (1 + step) / (10 + step)))
        losses.append(loss.item())
        if (step + 1) % max(1, config.steps // 10) == 0:
            recent = sum(losses[-200:]) / len(losses[-200:])
            log(f"  teacher step {step + 1}/{config.steps}  loss {recent:.4f}  ({time.time() - start:.0f} s)")
    for b_ema, b in zip(ema.buffers(), net.buffers(), strict=True):
        b_ema.copy_(b)
    return ema.eval(), losses


# --------------------------------------------------------------------------------------------- distillation


@dataclass(frozen=True)
class DistillConfig:
    steps_per_stage: int = 200
    batch: int = 32
    lr: float = 2e-3
    rank: int = 8
    ema_decay: float = 0.95
    grid_steps: int = 40  # N: multiples of 1000/N; N % 8 == 0 so every stage's edges are grid points
    omega_min: float = 2.0
    omega_max: float = 3.0
    loss: str = "mse"  # or "huber" (pseudo-Huber, c = 0.001)


@dataclass
class DistillResult:
    stages: list[int]
    final: dict[str, torch.Tensor]
    per_stage: dict[int, dict[str, torch.Tensor]]  # k -> LoRA factors at the end of that stage
    losses: list[float] = field(default_factory=list)  # one per training step, all stages in order
    stage_starts: list[int] = field(default_factory=list)
    seconds: float = 0.0


def _detached(factors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in factors.items()}


def distill(
    teacher: TinyUNet,
    images: torch.Tensor,
    labels: torch.Tensor,
    acp: torch.Tensor,
    stages: list[int],
    config: DistillConfig,
    seed: int,
    log: Log = print,
    name: str = "student",
) -> DistillResult:
    """LoRA consistency distillation through ``stages`` (e.g. [8, 4, 2, 1] for TSCD, [1] for one-shot CD).

    Each stage runs ``config.steps_per_stage * (4 / len(stages))`` steps so that TSCD and one-shot
    get the same total; each resumes from the previous stage's LoRA and optimiser.  The EMA target
    is re-synced to the student at the start of a stage.  Loss: ``w_mse`` of ``tscd.stage_weights``
    times MSE (or pseudo-Huber); the adversarial term of TSCD.md is left out (no discriminator here).
    """
    gen = torch.Generator().manual_seed(seed)
    teacher.requires_grad_(False)
    grid = tscd.solver_grid(config.grid_steps, len(acp))
    student_factors = init_lora(teacher, config.rank, generator=gen)
    opt = torch.optim.Adam(student_factors.values(), lr=config.lr)
    student = LoRAModel(teacher, student_factors)
    teacher_model = LoRAModel(teacher, None)
    null = teacher.config.num_classes
    total = 4 * config.steps_per_stage
    per_stage_steps = total // len(stages)
    result = DistillResult(stages=list(stages), final={}, per_stage={})
    start = time.time()
    for k in stages:
        target_factors = _detached(student_factors)
        target = LoRAModel(teacher, target_factors)
        w_mse, _w_adv = tscd.stage_weights(k)
        result.stage_starts.append(len(result.losses))
        for _ in range(per_stage_steps):
            idx = torch.randint(0, len(images), (config.batch,), generator=gen)
            y = labels[idx]
            omega = tscd.sample_omega(config.batch, config.omega_min, config.omega_max, generator=gen)
            out = tscd.tscd_step_targets(
                images[idx], y, torch.full_like(y, null), k, student=student, teacher=teacher_model, target=target,
                acp=acp, grid=grid, omega=omega, generator=gen, train_steps=len(acp),
            )  # fmt: skip
            if config.loss == "huber":
                loss = w_mse * tscd.pseudo_huber(out["pred"], out["target"])
            else:
                loss = w_mse * F.mse_loss(out["pred"], out["target"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tscd.ema_update(target_factors.values(), student_factors.values(), config.ema_decay)
            result.losses.append(loss.item() / w_mse)
        result.per_stage[k] = _detached(student_factors)
        recent = result.losses[-50:]
        log(
            f"  {name} stage k={k}: {per_stage_steps} steps, loss {sum(recent) / len(recent):.5f} ({time.time() - start:.0f} s)"
        )
    result.final = _detached(student_factors)
    result.seconds = time.time() - start
    return result
