"""Human-feedback learning (ReFL, arXiv 2304.05977, as Hyper-SD uses it): a reward model scores the student's images.

Per step: the student runs its own n-step trajectory (n from ``feedback_steps``; TCD with gamma 1) without
gradients up to its last step, a late timestep for n >= 2, then predicts x0 from there with gradients; the VAE
decodes it (under gradient checkpointing, optionally at a reduced size) and the reward model scores the image
against its prompt. Loss: ``feedback_weight · ReLU(alpha - reward)`` plus, as a regulariser, the distillation loss
of the stage before it (score distillation when the run has one, else TSCD with one segment), weighted by
``feedback_regularizer_weight``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from hypersd import tscd
from hypersd.schedules import trailing_timesteps

from .rewards import RewardModel, check_reward
from .stage_tscd import TSCDStage
from .trainer import Batch, ExportInfo, Stage, StepOutput, TrainerState


class FeedbackStage(Stage):
    name = "feedback"

    def __init__(self, cfg: Any, regulariser: Stage | None):
        self.cfg = cfg
        self.regulariser = regulariser if regulariser is not None else TSCDStage(1, cfg)
        self.reward_model: RewardModel | None = None

    def check(self, model: Any, captions: list[str]) -> None:
        """Load the reward model, score a blank image and check it can score every caption now: a missing or wrong
        model, or captions it cannot read, stop the run before step 1."""
        self.reward_model = check_reward(self.cfg.reward, prompts=captions)

    @property
    def alpha(self) -> float:
        assert self.reward_model is not None
        return self.reward_model.alpha if self.cfg.feedback_alpha is None else float(self.cfg.feedback_alpha)

    def prepare(self, state: TrainerState) -> None:
        if self.reward_model is None:
            self.check(state.model, state.cache.captions)
        self.reward_model.to(state.device)
        vae = state.model.vae
        vae.to(state.device)
        vae.requires_grad_(False)
        self.regulariser.ensure_prepared(state)

    def decode(self, state: TrainerState, x0: torch.Tensor) -> torch.Tensor:
        """Latents -> pixels in [-1, 1], differentiable, the decoder's activations recomputed in backward."""
        vae = state.model.vae
        size = state.cfg.feedback_decode_size
        if size:
            factor = 2 ** (len(vae.config.block_out_channels) - 1)
            x0 = F.interpolate(x0, size=(max(1, size // factor),) * 2, mode="bilinear", align_corners=False)
        z = (x0 / vae.config.scaling_factor).to(next(vae.parameters()).dtype)
        images = checkpoint(lambda latents: vae.decode(latents).sample, z, use_reentrant=False)
        return images.float().clamp(-1, 1)

    def student_image_latents(self, state: TrainerState, batch: Batch) -> torch.Tensor:
        gen = state.generators["noise"]
        steps = state.cfg.feedback_steps
        n = int(steps[int(torch.randint(len(steps), (1,), generator=gen))])
        ts = trailing_timesteps(n)
        x = torch.randn(batch.x0.shape, generator=gen).to(state.device)
        with torch.no_grad():
            for j in range(n - 1):
                t = torch.full((x.shape[0],), ts[j], dtype=torch.long, device=x.device)
                x0 = tscd.predict_x0(x, state.student(x, t, batch.cond), t, state.acp)
                x = tscd.add_noise(x0, torch.randn(x.shape, generator=gen).to(x.device), ts[j + 1], state.acp)
        t = torch.full((x.shape[0],), ts[-1], dtype=torch.long, device=x.device)
        return tscd.predict_x0(x, state.student(x, t, batch.cond), t, state.acp)

    def loss(self, state: TrainerState, batch: Batch) -> StepOutput:
        cfg = state.cfg
        images = self.decode(state, self.student_image_latents(state, batch).float())
        reward = self.reward_model.reward(images, batch.prompts)
        loss_reward = torch.relu(self.alpha - reward).mean()
        reg = self.regulariser.loss(state, batch)
        loss = cfg.feedback_weight * loss_reward + cfg.feedback_regularizer_weight * reg.loss
        terms = {"loss_reward": loss_reward, "reward": reward.detach().mean(), "loss_reg_stage": reg.loss.detach()}
        return StepOutput(loss, terms, {"regulariser": reg})

    def before_step(self, state: TrainerState) -> dict[str, float]:
        return self.regulariser.before_step(state)

    def after_loss(self, state: TrainerState, batch: Batch, out: StepOutput) -> dict[str, float]:
        return self.regulariser.after_loss(state, batch, out.scratch["regulariser"])

    def state_dict(self) -> dict[str, Any]:
        # a regulariser that is another stage of the run checkpoints itself; TSCD's k=1 keeps nothing
        return {}

    def export_info(self) -> ExportInfo:
        info = self.regulariser.export_info()
        return ExportInfo("unified" if info.kind == "unified" else "per-step", info.recommended_steps, info.gamma)
