"""Score distillation (DMD-style, arXiv 2311.18828 and DMD2 2405.14867): the unified 1-8-step LoRA.

* **Real score**: the frozen teacher (LoRA off) with classifier-free guidance ``dmd_guidance``.
* **Fake score**: a second LoRA adapter on the same UNet (starts as the teacher), trained to denoise the student's
  outputs; there is no second copy of the UNet.
* **Two time scales**: ``dmd_fake_updates`` fake-score updates per student update (DMD2's rule); the first reuses
  the student's own output of that step, as DMD2 does.
* **Distribution matching**: the student's x0 is moved along ``x0_fake - x0_real`` at a random noise level,
  normalised by ``mean |x0 - x0_real|`` (DMD's weighting), as ``0.5 · MSE(x0, sg(x0 - grad))``.
* **Regression**: the student's 1-step result from fixed noises against the teacher's many-step result from the same
  noises (DMD's paired loss; latent MSE instead of LPIPS, which would need a VGG download), keeping the student on
  the teacher's trajectory.
* **GAN** (optional): the hinge term on frozen-teacher features that TSCD uses, real = noised data latents.
* **Backward simulation**: the student's input is a point of its own n-step trajectory (n from ``unified_steps``,
  TCD with gamma 1: x0 re-noised with fresh noise, as DMD2's backward simulation), so one LoRA serves 1-8 steps.
"""

from __future__ import annotations

from typing import Any

import torch

from hypersd import tscd
from hypersd.schedules import trailing_timesteps

from .cache import sample_batch
from .lora import add_lora, lora_parameters
from .stage_tscd import discriminator_update, generator_gan_term
from .trainer import Batch, ExportInfo, Stage, StepOutput, TrainerState

FAKE_ADAPTER = "hypersd_fake"
#: the regression pairs' teacher results are computed this many training batches at a time: no gradient is kept, so
#: a chunk of 4 batches (8 x batch_size UNet rows with CFG) needs less memory than one training step
PAIR_CHUNK_BATCHES = 4
UNIFIED_GAMMA = 1.0  # the re-noising trajectory it is trained on; the official unified LoRA's default too


def _cat(a: dict, b: dict) -> dict:
    return tscd.default_cat_cond(a, b)


def regression_timesteps(batch: int, step_counts: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """One timestep per pair: a step count n drawn from ``step_counts``, then one of its n trailing timesteps."""
    grids = [trailing_timesteps(n) for n in step_counts]
    picks = torch.randint(len(grids), (batch,), generator=gen).tolist()
    steps = [grids[g][int(torch.randint(len(grids[g]), (1,), generator=gen))] for g in picks]
    return torch.tensor(steps, dtype=torch.long)


class DMDStage(Stage):
    name = "dmd"

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self.fake_named: list[tuple[str, torch.nn.Parameter]] = []
        self.fake_opt: Any = None
        self.pairs: dict[str, Any] = {}

    # set-up -------------------------------------------------------------------------------------------------
    def prepare(self, state: TrainerState) -> None:
        cfg = state.cfg
        add_lora(state.unet, cfg.rank, cfg.alpha, cfg.lora_targets, seed=cfg.seed + 1, adapter_name=FAKE_ADAPTER)
        self.fake_named = lora_parameters(state.unet, FAKE_ADAPTER)
        for _, p in self.fake_named:
            p.data = p.data.to(state.device, torch.float32)
        opt = torch.optim.AdamW([p for _, p in self.fake_named], lr=cfg.dmd_fake_lr, weight_decay=cfg.weight_decay)
        self.fake_opt = state.accelerator.prepare(opt)
        if cfg.dmd_regression_weight > 0:
            self.pairs = self._regression_pairs(state)

    @torch.no_grad()
    def _regression_pairs(self, state: TrainerState) -> dict[str, Any]:
        """Noises and the teacher's ``dmd_regression_steps``-step result from them (own generator: resumable),
        computed a few batches at a time (all at once would need 2 x pairs UNet rows in memory), with progress."""
        cfg = state.cfg
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + 7 + state.accelerator.process_index)
        x0, cond, uncond = sample_batch(state.cache, cfg.dmd_regression_pairs, gen, state.device)
        noise = torch.randn(x0.shape, generator=gen).to(state.device)
        chunk, count, parts = max(1, cfg.batch_size) * PAIR_CHUNK_BATCHES, noise.shape[0], []
        what = f"the teacher's {cfg.dmd_regression_steps}-step results for the regression pairs"
        for start in range(0, count, chunk):
            part = slice(start, start + chunk)
            parts.append(tscd.guided_ddim_sample(
                state.teacher, noise[part], {k: v[part] for k, v in cond.items()},
                {k: v[part] for k, v in uncond.items()}, cfg.dmd_regression_steps, cfg.dmd_guidance, state.acp,
            ))  # fmt: skip
            state.log({"event": "prepare", "stage": self.name, "what": what, "done": min(count, start + chunk),
                       "of": count})  # fmt: skip
        return {"noise": noise, "target": torch.cat(parts), "cond": cond}

    # the student's input ------------------------------------------------------------------------------------
    @torch.no_grad()
    def simulate(self, state: TrainerState, noise: torch.Tensor, cond: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """A point (x_t, t) of the student's own n-step trajectory from ``noise``; n, the step and the re-noising
        draw from the trainer's noise generator."""
        gen = state.generators["noise"]
        steps = state.cfg.unified_steps
        n = int(steps[int(torch.randint(len(steps), (1,), generator=gen))])
        stop = int(torch.randint(n, (1,), generator=gen))
        ts = trailing_timesteps(n)
        x = noise
        for j in range(stop):
            t = torch.full((x.shape[0],), ts[j], dtype=torch.long, device=x.device)
            x0 = tscd.predict_x0(x, state.student(x, t, cond), t, state.acp)
            fresh = torch.randn(x.shape, generator=gen).to(x.device)
            x = tscd.add_noise(x0, fresh, ts[j + 1], state.acp)
        return x, torch.full((x.shape[0],), ts[stop], dtype=torch.long, device=x.device)

    def generate(self, state: TrainerState, batch: Batch, with_grad: bool = True) -> torch.Tensor:
        noise = torch.randn(batch.x0.shape, generator=state.generators["noise"]).to(state.device)
        x_in, t_in = self.simulate(state, noise, batch.cond)
        with torch.set_grad_enabled(with_grad):
            return tscd.predict_x0(x_in, state.student(x_in, t_in, batch.cond), t_in, state.acp)

    # losses -------------------------------------------------------------------------------------------------
    def _noise_level(self, state: TrainerState, batch: int) -> torch.Tensor:
        cfg = state.cfg
        t = torch.randint(cfg.dmd_t_min, cfg.dmd_t_max + 1, (batch,), generator=state.generators["noise"])
        return t.to(state.device)

    @torch.no_grad()
    def matching_target(self, state: TrainerState, x0: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """sg(x0 - grad) of the distribution-matching loss, and the noise level it was taken at."""
        b = x0.shape[0]
        t = self._noise_level(state, b)
        noise = torch.randn(x0.shape, generator=state.generators["noise"]).to(state.device)
        x_t = tscd.add_noise(x0, noise, t, state.acp)
        eps = state.teacher(torch.cat([x_t, x_t]), torch.cat([t, t]), _cat(batch.cond, batch.uncond))
        real = tscd.predict_x0(x_t, tscd.cfg_combine(eps[b:], eps[:b], state.cfg.dmd_guidance), t, state.acp)
        fake = tscd.predict_x0(x_t, state.adapter(FAKE_ADAPTER)(x_t, t, batch.cond), t, state.acp)
        weight = 1.0 / (x0 - real).abs().mean(dim=tuple(range(1, x0.ndim)), keepdim=True).clamp(min=1e-5)
        return (x0 - (fake - real) * weight).detach(), t

    def loss(self, state: TrainerState, batch: Batch) -> StepOutput:
        cfg = state.cfg
        x0 = self.generate(state, batch)
        target, t = self.matching_target(state, x0.float(), batch)
        loss_dm = 0.5 * torch.nn.functional.mse_loss(x0.float(), target)
        loss = loss_dm
        terms = {"loss_dm": loss_dm}
        if self.pairs and cfg.dmd_regression_weight > 0:
            loss_reg = self.regression(state)
            loss = loss + cfg.dmd_regression_weight * loss_reg
            terms["loss_reg"] = loss_reg
        scratch: dict[str, Any] = {"x0": x0.detach()}
        if cfg.dmd_adversarial_weight > 0:
            noise = torch.randn(x0.shape, generator=state.generators["noise"]).to(state.device)
            fake_t, real_t = tscd.add_noise(x0, noise, t, state.acp), tscd.add_noise(batch.x0, noise, t, state.acp)
            loss_adv, fake_feats, real_feats = generator_gan_term(state, fake_t, real_t, t, batch.cond)
            loss = loss + cfg.dmd_adversarial_weight * loss_adv
            terms["loss_adv"] = loss_adv
            scratch.update(fake_feats=fake_feats, real_feats=real_feats)
        return StepOutput(loss, terms, scratch)

    def regression(self, state: TrainerState) -> torch.Tensor:
        """The student's result from a batch of the fixed noises against the teacher's result from them: from the
        noise itself (1 step), or with ``dmd_regression_multistep`` also from a later point of an n-step grid."""
        pairs, gen = self.pairs, state.generators["noise"]
        count = pairs["noise"].shape[0]
        idx = torch.randint(count, (min(state.cfg.batch_size, count),), generator=gen).to(pairs["noise"].device)
        noise, target = pairs["noise"][idx], pairs["target"][idx].float()
        cond = {k: v[idx] for k, v in pairs["cond"].items()}
        if state.cfg.dmd_regression_multistep:
            t = regression_timesteps(len(idx), state.cfg.unified_steps, gen).to(noise.device)
        else:
            t = torch.full((len(idx),), trailing_timesteps(1)[0], dtype=torch.long, device=noise.device)
        start = (t == trailing_timesteps(1)[0]).view(-1, *([1] * (noise.ndim - 1)))
        x_in = torch.where(start, noise, tscd.add_noise(target.to(noise.dtype), noise, t, state.acp))
        x0 = tscd.predict_x0(x_in, state.student(x_in, t, cond), t, state.acp)
        return torch.nn.functional.mse_loss(x0.float(), target)

    # the fake score's updates (two time scales) ---------------------------------------------------------------
    def fake_update(self, state: TrainerState, x0: torch.Tensor, cond: dict) -> float:
        """One denoising step of the fake score on the student's (detached) outputs."""
        t = torch.randint(0, 1000, (x0.shape[0],), generator=state.generators["noise"]).to(state.device)
        noise = torch.randn(x0.shape, generator=state.generators["noise"]).to(state.device)
        with state.accelerator.autocast():
            eps = state.adapter(FAKE_ADAPTER)(tscd.add_noise(x0, noise, t, state.acp), t, cond)
            loss = torch.nn.functional.mse_loss(eps.float(), noise.float())
        state.accelerator.backward(loss)
        state.apply_update([p for _, p in self.fake_named], self.fake_opt)
        return float(loss.detach())

    def before_step(self, state: TrainerState) -> dict[str, float]:
        losses = []
        updates = max(0, state.cfg.dmd_fake_updates - 1)  # the last one uses this step's own output
        if state.step_in_stage == 0:
            updates += state.cfg.dmd_fake_warmup
        for _ in range(updates):
            batch = state.batch()
            with state.accelerator.autocast():
                x0 = self.generate(state, batch, with_grad=False)
            losses.append(self.fake_update(state, x0.float(), batch.cond))
        return {"loss_fake": sum(losses)} if losses else {}

    def after_loss(self, state: TrainerState, batch: Batch, out: StepOutput) -> dict[str, float]:
        record = {"loss_fake": self.fake_update(state, out.scratch["x0"].float(), batch.cond)}
        if "fake_feats" in out.scratch:
            record["loss_disc"] = discriminator_update(state, out.scratch["fake_feats"], out.scratch["real_feats"])
        return record

    # checkpoint ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "fake_names": [n for n, _ in self.fake_named],
            "fake": [p.detach().cpu().clone() for _, p in self.fake_named],
            "fake_opt": self.fake_opt.state_dict() if self.fake_opt is not None else None,
            "pairs": {k: ({kk: vv.cpu() for kk, vv in v.items()} if isinstance(v, dict) else v.cpu())
                      for k, v in self.pairs.items()},
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("fake_names") != [n for n, _ in self.fake_named]:
            raise ValueError(
                "Hyper-SD: the checkpoint's fake-score adapter has another layout; resume with the same settings"
            )
        device = self.fake_named[0][1].device
        with torch.no_grad():
            for (_, p), v in zip(self.fake_named, state["fake"], strict=True):
                p.copy_(v)
        if state.get("fake_opt") is not None:
            self.fake_opt.load_state_dict(state["fake_opt"])
        pairs = state.get("pairs") or {}
        self.pairs = {k: ({kk: vv.to(device) for kk, vv in v.items()} if isinstance(v, dict) else v.to(device))
                      for k, v in pairs.items()}  # fmt: skip

    def export_info(self) -> ExportInfo:
        return ExportInfo("unified", 4, UNIFIED_GAMMA)
