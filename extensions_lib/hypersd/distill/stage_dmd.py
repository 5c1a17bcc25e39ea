"""Score distillation (DMD-style, arXiv 2311.18828 and DMD2 2405.14867): the unified 1-8-step LoRA.

* **Real score**: the frozen teacher (LoRA off) with classifier-free guidance ``dmd_guidance``.
* **Fake score**: a second LoRA adapter on the same UNet (starts as the teacher), trained to denoise the student's
  outputs; there is no second copy of the UNet.
* **Two time scales**: ``dmd_fake_updates`` fake-score updates per student update (DMD2's rule); the last reuses
  the student's own output of that step, as DMD2 does. ``dmd_fake_warmup`` fake-only updates (our addition) open
  each stage that trains the fake score (dmd, and feedback with dmd as its regulariser).
* **Distribution matching**: the student's x0 is moved along ``x0_fake - x0_real`` at a random noise level,
  normalised by ``mean |x0 - x0_real|`` (DMD's weighting), as ``0.5 · MSE(x0, sg(x0 - grad))``.
* **Regression**: the student's 1-step result from fixed noises against the teacher's many-step result from the same
  noises (DMD's paired loss; latent MSE instead of LPIPS, which would need a VGG download), keeping the student on
  the teacher's trajectory; with ``dmd_regression_multistep`` (our addition) also a second batch of pairs started
  at a later point of the unified step grids, so the few-step refinements stay on the teacher's images too.
* **GAN** (optional): the hinge term on frozen-teacher features that TSCD uses, real = noised data latents.
* **Backward simulation**: the student's input is a point of its own n-step trajectory (n from ``unified_steps``,
  TCD with gamma 1: x0 re-noised with fresh noise, as DMD2's backward simulation), so one LoRA serves 1-8 steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from hypersd import tscd
from hypersd.schedules import trailing_timesteps

from .cache import sample_batch
from .lora import add_lora, lora_parameters
from .models import rows_per_call
from .stage_tscd import discriminator_update, generator_gan_term
from .trainer import Batch, ExportInfo, Stage, StepOutput, TrainerState

FAKE_ADAPTER = "hypersd_fake"
#: the regression pairs' teacher results are computed this many training batches at a time: no gradient is kept, so
#: a chunk of 4 batches (8 x batch_size UNet rows with CFG) needs less memory than one training step
PAIR_CHUNK_BATCHES = 4
UNIFIED_GAMMA = 1.0  # the re-noising trajectory it is trained on; the official unified LoRA's default too


def _cat(a: dict, b: dict) -> dict:
    return tscd.default_cat_cond(a, b)


def _timesteps_like(x: torch.Tensor, t: int) -> torch.Tensor:
    return torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)


@dataclass
class Trajectory:
    """One batch's backward simulation, drawn up front: noise, conditioning, step count n, the step it stops at
    and the fresh noises of the re-noising before that step."""

    noise: torch.Tensor
    cond: dict
    n: int
    stop: int
    fresh: list[torch.Tensor]


def later_timesteps(batch: int, step_counts: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """One timestep per pair after the first of an n-step trailing grid: a step count n > 1 drawn from
    ``step_counts``, then one of its n - 1 later timesteps (4 steps: 749, 499, 249)."""
    grids = [trailing_timesteps(n)[1:] for n in step_counts if n > 1]
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
        if cfg.dmd_regression_weight > 0 and not self.pairs:  # a resumed stage has them from its checkpoint
            self.pairs = self._regression_pairs(state)

    def restore(self, state: TrainerState, saved: dict[str, Any]) -> None:
        """A resumed stage takes its regression pairs from the checkpoint, not from the teacher again (minutes)."""
        self.pairs = _pairs_on(saved.get("pairs") or {}, state.device)
        super().restore(state, saved)

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
    def draw_trajectory(self, state: TrainerState, noise: torch.Tensor, cond: dict) -> Trajectory:
        """Where a batch's backward simulation stops: n from ``unified_steps``, the stop step, and the re-noising
        noises before it, drawn from the trainer's noise generator in the order the steps use them."""
        gen = state.generators["noise"]
        steps = state.cfg.unified_steps
        n = int(steps[int(torch.randint(len(steps), (1,), generator=gen))])
        stop = int(torch.randint(n, (1,), generator=gen))
        fresh = [torch.randn(noise.shape, generator=gen).to(noise.device) for _ in range(stop)]
        return Trajectory(noise, cond, n, stop, fresh)

    @torch.no_grad()
    def run_trajectories(self, state: TrainerState, plans: list[Trajectory]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each plan's point (x_t, t) of the student's own n-step trajectory (TCD with gamma 1: x0 re-noised with
        fresh noise). The plans' student steps run in lockstep, one batched call per step for the rows still going
        (several plans at once: the warm-up's fake-score updates all start from the same student)."""
        xs = [p.noise for p in plans]
        for j in range(max((p.stop for p in plans), default=0)):
            going = [i for i, p in enumerate(plans) if p.stop > j]
            t = [_timesteps_like(xs[i], trailing_timesteps(plans[i].n)[j]) for i in going]
            x0s = self.student_x0_rows(state, [xs[i] for i in going], t, [plans[i].cond for i in going])
            for i, x0 in zip(going, x0s, strict=True):
                xs[i] = tscd.add_noise(x0, plans[i].fresh[j], trailing_timesteps(plans[i].n)[j + 1], state.acp)
        return [(x, _timesteps_like(x, trailing_timesteps(p.n)[p.stop])) for x, p in zip(xs, plans, strict=True)]

    @staticmethod
    def student_x0_rows(state: TrainerState, xs: list, ts: list, conds: list) -> list[torch.Tensor]:
        """The student's x0 for several (x, t, cond) batches of one shape in as few calls as ``rows_per_call``
        allows (a small model's cost on a CPU is per call, not per row); batches of another shape (SDXL's aspect
        buckets) go one by one. Gradients flow where they are enabled (the loss's two predictions)."""
        if len({tuple(x.shape[1:]) for x in xs}) > 1:
            return [
                tscd.predict_x0(x, state.student(x, t, c), t, state.acp) for x, t, c in zip(xs, ts, conds, strict=True)
            ]
        x, t = torch.cat(xs), torch.cat(ts)
        cond = {k: torch.cat([c[k] for c in conds]) for k in conds[0]}
        step, parts = rows_per_call(x), []
        for a in range(0, len(x), step):
            part = {k: v[a : a + step] for k, v in cond.items()}
            parts.append(tscd.predict_x0(x[a : a + step], state.student(x[a : a + step], t[a : a + step], part),
                                         t[a : a + step], state.acp))  # fmt: skip
        return list(torch.cat(parts).split([len(v) for v in xs]))

    def simulate(self, state: TrainerState, noise: torch.Tensor, cond: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """A point (x_t, t) of the student's own n-step trajectory from ``noise``."""
        return self.run_trajectories(state, [self.draw_trajectory(state, noise, cond)])[0]

    def student_input(self, state: TrainerState, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn(batch.x0.shape, generator=state.generators["noise"]).to(state.device)
        return self.simulate(state, noise, batch.cond)

    # losses -------------------------------------------------------------------------------------------------
    def _noise_level(self, state: TrainerState, batch: int) -> torch.Tensor:
        cfg = state.cfg
        t = torch.randint(cfg.dmd_t_min, cfg.dmd_t_max + 1, (batch,), generator=state.generators["noise"])
        return t.to(state.device)

    def draw_noise_level(self, state: TrainerState, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        """The noise level and the noise (shaped like the student's x0) the distribution-matching gradient is
        taken at."""
        t = self._noise_level(state, shape[0])
        return t, torch.randn(shape, generator=state.generators["noise"]).to(state.device)

    @torch.no_grad()
    def matching_target(
        self,
        state: TrainerState,
        x0: torch.Tensor,
        batch: Batch,
        drawn: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """sg(x0 - grad) of the distribution-matching loss, and the noise level it was taken at (``drawn``: that
        level and noise, drawn beforehand by :meth:`draw_noise_level`)."""
        b = x0.shape[0]
        t, noise = drawn if drawn is not None else self.draw_noise_level(state, x0.shape)
        x_t = tscd.add_noise(x0, noise, t, state.acp)
        eps = state.teacher(torch.cat([x_t, x_t]), torch.cat([t, t]), _cat(batch.cond, batch.uncond))
        real = tscd.predict_x0(x_t, tscd.cfg_combine(eps[b:], eps[:b], state.cfg.dmd_guidance), t, state.acp)
        fake = tscd.predict_x0(x_t, state.adapter(FAKE_ADAPTER)(x_t, t, batch.cond), t, state.acp)
        weight = 1.0 / (x0 - real).abs().mean(dim=tuple(range(1, x0.ndim)), keepdim=True).clamp(min=1e-5)
        return (x0 - (fake - real) * weight).detach(), t

    def loss(self, state: TrainerState, batch: Batch) -> StepOutput:
        cfg = state.cfg
        # the random draws in the order of the losses; the student's two x0 predictions in one UNet call
        x_in, t_in = self.student_input(state, batch)
        drawn = self.draw_noise_level(state, x_in.shape)
        reg = self.regression_inputs(state) if self.pairs and cfg.dmd_regression_weight > 0 else None
        if reg is None:
            x0, x0_reg = self.student_x0_rows(state, [x_in], [t_in], [batch.cond])[0], None
        else:
            x0, x0_reg = self.student_x0_rows(state, [x_in, reg[0]], [t_in, reg[1]], [batch.cond, reg[2]])
        target, t = self.matching_target(state, x0.float(), batch, drawn)
        loss_dm = 0.5 * torch.nn.functional.mse_loss(x0.float(), target)
        loss = loss_dm
        terms = {"loss_dm": loss_dm}
        if reg is not None:
            loss_reg = torch.nn.functional.mse_loss(x0_reg.float(), reg[3].float())
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

    def regression_inputs(self, state: TrainerState) -> tuple[torch.Tensor, torch.Tensor, dict, torch.Tensor]:
        """(x_in, t, cond, teacher result) for a batch of the fixed noises, from the noise itself (1 step); with
        ``dmd_regression_multistep`` also a second batch from the teacher result noised (with the pair's own noise)
        to a later point of an n-step grid, the input a perfect first step would hand the next one."""
        cfg, pairs, gen = state.cfg, self.pairs, state.generators["noise"]
        count, device = pairs["noise"].shape[0], pairs["noise"].device
        size = min(cfg.batch_size, count)
        idx = torch.randint(count, (size,), generator=gen).to(device)
        t = torch.full((size,), trailing_timesteps(1)[0], dtype=torch.long, device=device)
        if cfg.dmd_regression_multistep and any(n > 1 for n in cfg.unified_steps):
            idx = torch.cat([idx, torch.randint(count, (size,), generator=gen).to(device)])
            t = torch.cat([t, later_timesteps(size, cfg.unified_steps, gen).to(device)])
        noise, target = pairs["noise"][idx], pairs["target"][idx].float()
        cond = {k: v[idx] for k, v in pairs["cond"].items()}
        start = (t == trailing_timesteps(1)[0]).view(-1, *([1] * (noise.ndim - 1)))
        x_in = torch.where(start, noise, tscd.add_noise(target.to(noise.dtype), noise, t, state.acp))
        return x_in, t, cond, target

    # the fake score's updates (two time scales) ---------------------------------------------------------------
    def draw_fake(self, state: TrainerState, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        """A fake-score update's timesteps and noise."""
        t = torch.randint(0, 1000, (shape[0],), generator=state.generators["noise"]).to(state.device)
        return t, torch.randn(shape, generator=state.generators["noise"]).to(state.device)

    def fake_update(self, state: TrainerState, x0: torch.Tensor, cond: dict, drawn: tuple | None = None) -> float:
        """One denoising step of the fake score on the student's (detached) outputs (``drawn``: its timesteps and
        noise from :meth:`draw_fake`, else drawn now)."""
        t, noise = drawn if drawn is not None else self.draw_fake(state, x0.shape)
        with state.accelerator.autocast():
            eps = state.adapter(FAKE_ADAPTER)(tscd.add_noise(x0, noise, t, state.acp), t, cond)
            loss = torch.nn.functional.mse_loss(eps.float(), noise.float())
        state.accelerator.backward(loss)
        state.apply_update([p for _, p in self.fake_named], self.fake_opt)
        return float(loss.detach())

    def before_step(self, state: TrainerState) -> dict[str, float]:
        """The fake score's extra updates (and, at a stage's start, its warm-up) on fresh student outputs: the
        student does not change in between, so their trajectories are batched; the random draws are those of one
        update after the other."""
        updates = max(0, state.cfg.dmd_fake_updates - 1)  # the last one uses this step's own output
        if state.step_in_stage == 0:  # each stage that trains with the fake score starts with its warm-up
            updates += state.cfg.dmd_fake_warmup
        if updates == 0:
            return {}
        gen, plans, batches, drawn = state.generators["noise"], [], [], []
        for _ in range(updates):
            batch = state.batch()
            noise = torch.randn(batch.x0.shape, generator=gen).to(state.device)
            plans.append(self.draw_trajectory(state, noise, batch.cond))
            batches.append(batch)
            drawn.append(self.draw_fake(state, batch.x0.shape))
        with state.accelerator.autocast(), torch.no_grad():
            inputs = self.run_trajectories(state, plans)
            x0s = self.student_x0_rows(state, [x for x, _ in inputs], [t for _, t in inputs], [b.cond for b in batches])
        losses = [self.fake_update(state, x0.float(), b.cond, d) for x0, b, d in zip(x0s, batches, drawn, strict=True)]
        return {"loss_fake": sum(losses)}

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
            "pairs": _pairs_on(self.pairs, "cpu"),
        }

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
        self.pairs = _pairs_on(state.get("pairs") or {}, device)

    def export_info(self) -> ExportInfo:
        return ExportInfo("unified", 4, UNIFIED_GAMMA)


def _pairs_on(pairs: dict[str, Any], device: Any) -> dict[str, Any]:
    """The regression pairs (noise, target, cond: a dict of tensors) on ``device``."""
    return {k: ({kk: vv.to(device) for kk, vv in v.items()} if isinstance(v, dict) else v.to(device))
            for k, v in pairs.items()}  # fmt: skip
