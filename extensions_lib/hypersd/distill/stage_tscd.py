"""TSCD's k-segment stage (TSCD.md "One training step"): consistency distillation inside k time segments.

The math is ``hypersd.tscd``; this stage adds the loss (MSE or pseudo-Huber, plus the optional hinge-GAN term on
frozen-teacher features) and its discriminator update.
"""

from __future__ import annotations

import torch

from hypersd import tscd

from .trainer import Batch, ExportInfo, Stage, StepOutput, TrainerState, frozen
from .views import teacher_mid_features


def distance(cfg, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if cfg.loss == "huber":
        return tscd.pseudo_huber(pred, target, cfg.huber_c)
    return torch.nn.functional.mse_loss(pred.float(), target.float())


def generator_gan_term(state: TrainerState, fake: torch.Tensor, real: torch.Tensor, t: torch.Tensor, cond: dict):
    """Hinge GAN, generator side, on frozen-teacher mid-block features; returns (loss, fake feats, real feats)."""
    disc, _ = state.discriminator()
    both = tscd.default_cat_cond(cond, cond)
    feats = teacher_mid_features(state.unet, torch.cat([fake, real]), torch.cat([t, t]), both)
    fake_feats, real_feats = feats[: fake.shape[0]], feats[fake.shape[0] :].detach()
    with frozen(disc):
        loss = -disc(fake_feats).mean()
    return loss, fake_feats, real_feats


def discriminator_update(state: TrainerState, fake_feats: torch.Tensor, real_feats: torch.Tensor) -> float:
    disc, disc_opt = state.discriminator()
    with state.accelerator.autocast():
        loss = torch.relu(1 - disc(real_feats)).mean() + torch.relu(1 + disc(fake_feats.detach())).mean()
    state.accelerator.backward(loss)
    state.apply_update(list(disc.parameters()), disc_opt, clip=None)
    return float(loss.detach())


class TSCDStage(Stage):
    """A stage with ``k`` segments; its LoRA is the student at its end (best at k steps)."""

    def __init__(self, k: int, cfg):
        self.k = k
        self.name = str(k)
        w_mse, w_adv = tscd.stage_weights(k, cfg.stage_weights or None)
        self.w_mse, self.w_adv = w_mse, (w_adv if cfg.adversarial else 0.0)

    def targets(self, state: TrainerState, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = state.cfg
        omega = tscd.sample_omega(cfg.batch_size, cfg.omega_min, cfg.omega_max, generator=state.generators["noise"])
        return tscd.tscd_step_targets(
            batch.x0, batch.cond, batch.uncond, self.k, student=state.student, teacher=state.teacher,
            target=state.target, acp=state.acp, grid=state.grid, omega=omega.to(state.device),
            generator=state.generators["noise"], offset_noise=cfg.offset_noise, shift=int(cfg.trailing_grid),
        )  # fmt: skip

    def loss(self, state: TrainerState, batch: Batch) -> StepOutput:
        out = self.targets(state, batch)
        pred, target = out["pred"].float(), out["target"].float()
        loss_mse = distance(state.cfg, pred, target)
        loss = self.w_mse * loss_mse
        loss_adv = torch.zeros((), device=state.device)
        scratch = {}
        if self.w_adv > 0:
            loss_adv, fake_feats, real_feats = generator_gan_term(state, pred, target, out["t_end"], batch.cond)
            loss = loss + self.w_adv * loss_adv
            scratch = {"fake_feats": fake_feats, "real_feats": real_feats}
        return StepOutput(loss, {"loss_mse": loss_mse, "loss_adv": loss_adv}, scratch)

    def after_loss(self, state: TrainerState, batch: Batch, out: StepOutput) -> dict[str, float]:
        if "fake_feats" not in out.scratch:
            return {"loss_disc": 0.0}
        return {"loss_disc": discriminator_update(state, out.scratch["fake_feats"], out.scratch["real_feats"])}

    def export_info(self) -> ExportInfo:
        return ExportInfo("per-step", self.k, None)
