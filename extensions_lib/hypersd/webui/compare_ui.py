"""The accordion's Compare button: the same seed with the preset and with the model's normal settings.

Both images are made by WebUI's own ``process_images`` (txt2img), one after the other, under
WebUI's GPU queue lock, with nothing saved to the outputs folder.  "Normal settings" are the
sampler, schedule, steps and CFG currently in the txt2img tab; the Hyper-SD side is the same
request with the accordion's plan applied at the point WebUI applies it (``process``), and with
the CFG-1 fast path, so the two timings compare what a user would get.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Any

from modules import processing, shared
from modules.call_queue import queue_lock

from hypersd.plan_apply import HyperPlanError, apply_plan
from hypersd.settings import HyperSettings
from hypersd.webui import cfg1, profile
from hypersd.webui.accordion_events import speed_words
from hypersd.webui.compare_fields import MAIN_FIELDS  # noqa: F401


@dataclass
class MainValues:
    prompt: str = ""
    neg_prompt: str = ""
    seed: int = -1
    width: int = 512
    height: int = 512
    steps: int = 20
    sampling: str = "DPM++ 2M"
    scheduler: str = "Automatic"
    cfg_scale: float = 7.0


class _HyperOnlyScripts:
    """A script runner that runs only Hyper-SD's hooks (and no other extension's) for the comparison."""

    def __init__(self, settings: HyperSettings | None):
        self.settings = settings
        self.plan = None

    def __getattr__(self, name):  # every other hook WebUI calls is a no-op
        return lambda *args, **kwargs: None

    def process(self, p):
        if self.settings is None:
            return
        from hypersd.webui.script import plan_for

        self.plan = plan_for(p, self.settings)
        if self.plan.errors:
            raise HyperPlanError("\n".join(self.plan.errors))
        apply_plan(p, self.plan)

    def process_before_every_sampling(self, p, **kwargs):
        if self.plan is not None and profile.current().cfg1_patch:
            cfg1.install(p, shared.opts)


def _make_p(v: MainValues, seed: int):
    p = processing.StableDiffusionProcessingTxt2Img(
        sd_model=shared.sd_model,
        prompt=v.prompt,
        negative_prompt=v.neg_prompt,
        seed=seed,
        sampler_name=v.sampling,
        scheduler=v.scheduler,
        steps=int(v.steps),
        cfg_scale=float(v.cfg_scale),
        width=int(v.width),
        height=int(v.height),
        batch_size=1,
        n_iter=1,
        do_not_save_samples=True,
        do_not_save_grid=True,
    )
    return p


def _run(p, scripts) -> tuple[Any, float, str]:
    p.scripts = scripts
    p.script_args = []
    start = time.perf_counter()
    res = processing.process_images(p)
    seconds = time.perf_counter() - start
    return res.images[0], seconds, res.infotexts[0] if res.infotexts else ""


def run_compare(settings: HyperSettings, values: MainValues):
    """Returns the gallery items [(image, caption), …] and an HTML summary."""
    settings = settings.replace(enabled=True)
    seed = int(values.seed) if values.seed not in (None, "", -1) else int(processing.get_fixed_seed(-1))
    with queue_lock:
        shared.state.begin(job="hypersd_compare")
        try:
            normal_img, normal_s, _ = _run(_make_p(values, seed), _HyperOnlyScripts(None))
            hyper_scripts = _HyperOnlyScripts(settings)
            hyper_img, hyper_s, hyper_info = _run(_make_p(values, seed), hyper_scripts)
        finally:
            shared.state.end()
    plan = hyper_scripts.plan
    normal_caption = f"Normal: {values.sampling}, {values.steps} steps, CFG {values.cfg_scale:g} — {normal_s:.1f} s"
    title = plan.preset.title if plan and plan.preset else "Hyper-SD"
    hyper_caption = (
        f"{title}: {plan.steps if plan else '?'} steps, CFG {plan.cfg_scale if plan else '?'} — {hyper_s:.1f} s"
    )
    summary = (
        f'<div class="hypersd-status">Seed {seed}: normal {normal_s:.1f} s, Hyper-SD {hyper_s:.1f} s '
        f"({speed_words(normal_s, hyper_s)}).<br>{html.escape(plan.status if plan else '')}</div>"
    )
    del hyper_info
    return [(hyper_img, hyper_caption), (normal_img, normal_caption)], summary
