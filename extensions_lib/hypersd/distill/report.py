"""The quality report after every run: each exported LoRA measured, the best settings written into its metadata.

For each LoRA (read back from its file) at 1/2/4/8 steps on trailing timesteps:

1. **choosing**: every sampler setting of the level (``quick``: TCD with gamma 0, 0.3 and 1 at CFG 1; ``full``: TCD
   with gamma 0, 0.3, 0.5, 1, LCM and Euler, each at CFG 1, 1.5 and 2) on ``report_noises`` noises; the error is the
   MSE to the teacher's 25-step result from the same noise and prompt, in latents and in pixels;
2. **measuring**: the best setting per step count on ``report_samples`` noises: the errors again, the prompt
   fidelity (where a scorer is given: ``report_scorer`` or the feedback stage's reward model) and the Fréchet
   distance between the scorer's features of these images and of the teacher's 25-step images from *other* noises
   (same prompts). Score distillation does not keep the noise -> image map, so the error alone would mislead
   there; and against the teacher's images from the same noises, a LoRA that keeps the map would score near 0
   while any sampler that draws its own images cannot go under the two sample sets' own distance (the teacher at
   25 steps itself: its line in the report, the floor).

Best = lowest pixel error for a per-step LoRA, highest fidelity (then lowest Fréchet distance, then lowest error)
for a unified one. Recommended steps: a per-step LoRA's own k; for a unified LoRA the fewest steps within 5 % of
its best fidelity (or 10 % of its lowest error without a scorer). The teacher's own few-step DDIM (with CFG) is
measured the same way as the line every LoRA is compared with. Euler on trailing timesteps is the same update as
TCD with gamma 0 and LCM almost the same as TCD with gamma 1; the full level lists them because WebUI users pick
them by name. The images are sampled as many per call as ``rows_per_call`` allows; TCD's and LCM's noise does not
depend on that chunking.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from hypersd import tscd
from hypersd.compare import sample_euler, sample_lcm
from hypersd.denoiser import EpsDenoiser
from hypersd.sampler_names import TCD_SAMPLER, TRAILING
from hypersd.sampling import sample_tcd
from hypersd.schedules import timesteps_to_sigmas, trailing_timesteps
from hypersd.train import layout

from .export import update_metadata
from .lora import kohya_module_key
from .models import encode_prompts, rows_per_call, sdxl_time_ids
from .views import adapters_disabled, merged_adapter, swapped_weights

REFERENCE_STEPS = 25


def step_noise(seed: int, like: torch.Tensor, count: int, start: int):
    """A noise sampler for rows ``start:start + len(like)`` of ``count`` images: step i's noise for image j is the
    same however the images are chunked (each step draws all ``count`` rows from its own seed)."""
    calls = [0]

    def noise_sampler(_sigma: Any, _sigma_next: Any) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed * 1000 + calls[0])
        calls[0] += 1
        full = torch.randn((count, *like.shape[1:]), generator=gen)
        return full[start : start + like.shape[0]].to(like.device, like.dtype)

    return noise_sampler


@dataclass(frozen=True)
class Setting:
    sampler: str  # WebUI's sampler name: "TCD", "LCM", "Euler"
    gamma: float | None
    cfg: float

    @property
    def label(self) -> str:
        gamma = f" gamma {self.gamma:g}" if self.gamma is not None else ""
        return f"{self.sampler}{gamma}, CFG {self.cfg:g}"

    def metadata(self, steps: int) -> dict[str, Any]:
        meta = {"steps": steps, "sampler": self.sampler, "scheduler": TRAILING.label, "cfg": self.cfg}
        if self.gamma is not None:
            meta["gamma"] = self.gamma
        return meta


def settings_for(level: str) -> list[Setting]:
    if level == "full":
        samplers = [(TCD_SAMPLER, g) for g in (0.0, 0.3, 0.5, 1.0)] + [("LCM", None), ("Euler", None)]
        return [Setting(s, g, c) for c in (1.0, 1.5, 2.0) for s, g in samplers]
    return [Setting(TCD_SAMPLER, g, 1.0) for g in (0.0, 0.3, 1.0)]


class Evaluator:
    """Noises, prompts, conditioning and the teacher's references, shared by every LoRA; counts its UNet work."""

    def __init__(self, state: Any, scorer: Any | None):
        cfg, cache = state.cfg, state.cache
        self.state, self.scorer = state, scorer
        self.device, self.acp = state.device, state.acp
        self.teacher_cfg = cfg.report_teacher_cfg or 0.5 * (cfg.omega_min + cfg.omega_max)
        base_prompts = report_prompts(cfg, cache)
        count = max(cfg.report_samples, cfg.report_noises)
        self.prompts = [base_prompts[i % len(base_prompts)] for i in range(count)]
        self.cond, self.uncond = self._conditioning(self.prompts)
        latent = int(cfg.resolution) // (2 ** (len(state.model.vae.config.block_out_channels) - 1))
        gen = torch.Generator().manual_seed(cfg.sample_seed)
        channels = state.unet.config.in_channels
        self.noise = torch.randn((count, channels, latent, latent), generator=gen).to(self.device)
        # the Fréchet distance's reference: the teacher's images from other noises (same prompts), so a LoRA that
        # keeps the teacher's noise -> image map has no head start over one that draws its own images
        self.reference_noise = torch.randn(self.noise.shape, generator=gen).to(self.device)
        self.calls = self.rows = 0
        self.started = time.perf_counter()

    def _conditioning(self, prompts: list[str]) -> tuple[dict, dict]:
        state, cache = self.state, self.state.cache
        model = state.model
        unique = sorted(set(prompts))
        enc = encode_prompts(model, unique, next(model.text_encoders[0].parameters()).device)
        rows = torch.tensor([unique.index(p) for p in prompts])
        cond = {k: v.float().cpu()[rows].to(self.device) for k, v in enc.items()}
        uncond = {"encoder_hidden_states": cache.uncond_hidden.expand(len(prompts), -1, -1).to(self.device)}
        if model.base == "sdxl":
            res = int(state.cfg.resolution)
            tid = sdxl_time_ids((res, res), (0, 0), (res, res))[None].expand(len(prompts), -1).to(self.device)
            cond["time_ids"] = tid
            uncond.update(text_embeds=cache.uncond_pooled.expand(len(prompts), -1).to(self.device), time_ids=tid)
        return cond, uncond

    def _eps(self, view: Any, cond: dict, uncond: dict, scale: float):
        def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            t = t.to(self.device)
            t = t.round().long() if bool(((t - t.round()).abs() < 1e-3).all()) else t
            b = x.shape[0]
            self.calls += 1
            if scale == 1.0:
                self.rows += b
                return view(x, t, cond)
            self.rows += 2 * b
            both = view(torch.cat([x, x]), torch.cat([t, t]), tscd.default_cat_cond(cond, uncond))
            return tscd.cfg_combine(both[b:], both[:b], scale)

        return eps

    @torch.no_grad()
    def sample(
        self, view: Any, setting: Setting, steps: int, count: int, seed: int, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Latents of the first ``count`` noises (``noise``, default the report's), in chunks; TCD's and LCM's
        noise is seeded by ``seed``."""
        noise = self.noise if noise is None else noise
        out, chunk = [], rows_per_call(noise)
        for start in range(0, count, chunk):
            end = min(count, start + chunk)
            cond = {k: v[start:end] for k, v in self.cond.items()}
            uncond = {k: v[start:end] for k, v in self.uncond.items()}
            model = EpsDenoiser(self._eps(view, cond, uncond, setting.cfg), self.acp.cpu())
            sigmas = timesteps_to_sigmas(trailing_timesteps(steps), model.sigmas).float().to(self.device)
            x = noise[start:end] * sigmas[0]
            noise_sampler = step_noise(seed, x, count, start)
            if setting.sampler == TCD_SAMPLER:
                x = sample_tcd(model, x, sigmas, eta=setting.gamma, noise_sampler=noise_sampler, schedule=model)
            elif setting.sampler == "LCM":
                x = sample_lcm(model, x, sigmas, noise_sampler)
            else:
                x = sample_euler(model, x, sigmas)
            out.append(x.float())
        return torch.cat(out)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.state.model.vae
        vae.to(self.device)
        dtype = next(vae.parameters()).dtype
        scale = vae.config.scaling_factor
        chunk = rows_per_call(latents)
        images = [
            vae.decode((latents[i : i + chunk] / scale).to(dtype)).sample.float() for i in range(0, len(latents), chunk)
        ]
        return torch.cat(images).clamp(-1, 1)

    def measure(self, latents: torch.Tensor, ref: dict[str, torch.Tensor], with_scores: bool) -> dict[str, Any]:
        n = len(latents)
        pixels = self.decode(latents)
        out: dict[str, Any] = {
            "latent_mse": float((latents - ref["latents"][:n]).pow(2).flatten(1).mean(1).mean()),
            "pixel_mse": float((pixels - ref["pixels"][:n]).pow(2).flatten(1).mean(1).mean()),
            "images": pixels,
        }
        if with_scores and self.scorer is not None:
            with torch.no_grad():
                out["fidelity"] = float(self.scorer.fidelity(pixels, self.prompts[:n]).float().mean())
                out["reward"] = float(self.scorer.reward(pixels, self.prompts[:n]).float().mean())
                feats = self.scorer.features(pixels).float().cpu().numpy()
            if "features" in ref and n >= 2:
                from hypersd.report_page import frechet_distance

                out["frechet"] = frechet_distance(feats, ref["features"][:n])
            out["features"] = feats
        return out

    def cost(self) -> dict[str, Any]:
        return {
            "unet_calls": self.calls,
            "unet_rows": self.rows,
            "seconds": round(time.perf_counter() - self.started, 1),
        }


def lora_weights_for(state: Any, path: Any) -> list[torch.Tensor]:
    """The student adapter's tensors as stored in the exported kohya file ``path`` (in the adapter's order)."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    out = []
    for name, param in state.named:
        m = re.fullmatch(r"(.+)\.lora_([AB])\.[^.]+\.weight", name)
        key = kohya_module_key(m[1], state.model.base, state.unet.config)
        stored = tensors[f"{key}.{'lora_down' if m[2] == 'A' else 'lora_up'}.weight"]
        alpha = float(tensors[f"{key}.alpha"])
        if stored.shape != param.shape or abs(alpha - float(state.cfg.alpha)) > 1e-3:
            raise ValueError(f"Hyper-SD: {path} does not match this run's LoRA ({key}: shape or alpha differs)")
        out.append(stored.to(param.device, param.dtype))
    return out


def _best(results: list[dict[str, Any]], unified: bool, scored: bool) -> dict[str, Any]:
    """A per-step LoRA's lowest pixel error; a unified LoRA's highest fidelity, then lowest Fréchet distance (its
    images are not the teacher's from the same noise: a lower same-noise error would favour the least re-noising
    gamma, not the images closest to the teacher's), then lowest error."""
    if unified and scored:
        return max(results, key=lambda r: (r.get("fidelity", 0.0), -r.get("frechet", 0.0), -r["pixel_mse"]))
    return min(results, key=lambda r: r["pixel_mse"])


def recommended_steps(kind: str, k: int | None, by_steps: dict[int, dict[str, Any]], scored: bool) -> int:
    """A per-step LoRA's own k; a unified LoRA's fewest steps within 5 % of its best fidelity (10 % of its lowest
    error). The margins are taken of the best value's size, so a negative CLIP-type score (an untrained or unrelated
    scorer) still counts its best as within; non-finite numbers never count; with none left, the most steps."""
    if kind == "per-step" and k in by_steps:
        return k
    fidelity = _finite(by_steps, "fidelity") if scored else {}
    if fidelity:
        top = max(fidelity.values())
        within = [n for n, v in fidelity.items() if v >= top - 0.05 * abs(top)]
    else:
        error = _finite(by_steps, "pixel_mse")
        low = min(error.values(), default=0.0)
        within = [n for n, v in error.items() if v <= low + 0.1 * abs(low)]
    return min(within) if within else max(by_steps)


def _finite(by_steps: dict[int, dict[str, Any]], key: str) -> dict[int, float]:
    return {n: float(r[key]) for n, r in by_steps.items() if key in r and math.isfinite(float(r[key]))}


def report_prompts(cfg: Any, cache: Any) -> list[str]:
    """The report's prompts: ``report_prompts``, else the sample prompts, else the first 8 captions."""
    return list(cfg.report_prompts) or list(cache.sample_prompts) or cache.captions[:8]


def _scorer(cfg: Any, prompts: list[str]) -> tuple[Any | None, str | None]:
    """The prompt-fidelity scorer, or None and why, when it does not load or cannot read the report's prompts: the
    report then measures errors and no fidelity, instead of failing after the training."""
    spec = cfg.report_scorer or cfg.reward
    if not spec:
        return None, None
    from .rewards import RewardError, load_reward

    try:
        scorer = load_reward(spec)
    except RewardError as err:
        return None, str(err)
    unreadable = scorer.unreadable(list(dict.fromkeys(prompts)))
    if unreadable:
        return None, (f"Hyper-SD: the report's scorer {spec!r} cannot score the prompt {unreadable[0]!r} "
                      f"({scorer.unreadable_hint}); the report goes on without prompt fidelity")  # fmt: skip
    return scorer, None


def measure_teacher(ev: Evaluator) -> tuple[dict[str, torch.Tensor], dict[int, dict[str, Any]]]:
    count = len(ev.noise)
    teacher = ev.state.teacher
    guided = Setting("Euler", None, ev.teacher_cfg)  # the teacher's DDIM with CFG (Euler on trailing timesteps)
    ref_latents = ev.sample(teacher, guided, REFERENCE_STEPS, count, seed=0)
    ref = {"latents": ref_latents, "pixels": ev.decode(ref_latents)}
    if ev.scorer is not None:
        other = ev.sample(teacher, guided, REFERENCE_STEPS, count, seed=0, noise=ev.reference_noise)
        with torch.no_grad():
            ref["features"] = ev.scorer.features(ev.decode(other)).float().cpu().numpy()
    # the teacher's own 25-step images: error 0; their Fréchet distance is the floor of a perfect sampler's
    line = {REFERENCE_STEPS: ev.measure(ref_latents, ref, with_scores=True)}
    for n in ev.state.cfg.report_steps:
        lat = ev.sample(teacher, guided, n, count, seed=0)
        line[n] = ev.measure(lat, ref, with_scores=True)
    return ref, line


def measure_lora(ev: Evaluator, ref: dict, settings: list[Setting], kind: str, k: int | None) -> dict[str, Any]:
    cfg, scored = ev.state.cfg, ev.scorer is not None
    grid, best = [], {}
    for n in cfg.report_steps:
        results = []
        for setting in settings:
            lat = ev.sample(ev.state.student, setting, n, cfg.report_noises, seed=1000 + n)
            r = ev.measure(lat, ref, with_scores=kind == "unified")
            r.update(setting=setting, steps=n)
            results.append(r)
            grid.append({"steps": n, **asdict(setting), **_numbers(r)})
        choice = _best(results, kind == "unified", scored)["setting"]
        lat = ev.sample(ev.state.student, choice, n, len(ev.noise), seed=1000 + n)
        best[n] = {**ev.measure(lat, ref, with_scores=True), "setting": choice}
    steps = recommended_steps(kind, k, best, scored)
    return {"grid": grid, "best": best, "recommended": best[steps]["setting"].metadata(steps)}


def _numbers(r: dict[str, Any]) -> dict[str, float]:
    return {
        k: round(float(v), 6) for k, v in r.items() if k in ("latent_mse", "pixel_mse", "fidelity", "frechet", "reward")
    }


def run_quality_report(run: Any, state: Any, stage_loras: dict[Any, Any]) -> dict[str, Any]:
    """Measure every stage LoRA, write report.json/report.html and the measured settings into each LoRA's metadata."""
    from .report_html import write_report

    cfg = state.cfg
    scorer, warning = _scorer(cfg, report_prompts(cfg, state.cache))
    if warning:
        run.log({"event": "report_warning", "message": warning})
    ev = Evaluator(state, scorer)
    run.log({"event": "report_start", "loras": len(stage_loras), "level": cfg.report})
    todo = [
        (s, stage_loras[s.log_id]) for s in run.stages if s.log_id in stage_loras and stage_loras[s.log_id].is_file()
    ]

    def measuring(done: int, what: str) -> None:
        run.log({"event": "report_progress", "what": what, "done": done, "of": len(todo) + 1})

    measuring(0, "the teacher")
    with adapters_disabled(state.unet):
        ref, teacher_line = measure_teacher(ev)
    loras: dict[str, dict[str, Any]] = {}
    settings = settings_for(cfg.report)
    for done, (stage, path) in enumerate(todo, start=1):
        measuring(done, f"the {stage.label} LoRA")
        info = stage.export_info()
        with swapped_weights(state.params, lora_weights_for(state, path)), merged_adapter(state.unet):
            loras[stage.name] = {"file": str(path), "kind": info.kind, "label": stage.label,
                                 **measure_lora(ev, ref, settings, info.kind, getattr(stage, "k", None))}  # fmt: skip
        update_metadata(path, loras[stage.name]["recommended"])
    report = {
        "level": cfg.report, "noises": cfg.report_noises, "samples": len(ev.noise), "teacher_cfg": ev.teacher_cfg,
        "reference_steps": REFERENCE_STEPS, "scorer": (cfg.report_scorer or cfg.reward) if ev.scorer else None,
        "teacher": {n: _numbers(r) for n, r in teacher_line.items()},
        "loras": {name: {"file": v["file"], "kind": v["kind"], "label": v["label"], "grid": v["grid"],
                         "recommended": v["recommended"],
                         "best": {n: {**_numbers(r), **asdict(r["setting"])} for n, r in v["best"].items()}}
                  for name, v in loras.items()},
        "recommended": {name: v["recommended"] for name, v in loras.items()},
        "cost": ev.cost(),
        "warnings": [warning] if warning else [],
    }  # fmt: skip
    run_dir = run.paths.run_dir
    layout.report_json(run_dir).write_text(json.dumps(report, indent=1), encoding="utf-8")
    write_report(layout.report_html(run_dir), report, teacher_line, loras, ev.prompts)
    run.log({"event": "report", "path": str(layout.report_html(run_dir)), **report["cost"]})
    return report
