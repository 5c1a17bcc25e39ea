"""The sampler and schedule names Hyper-SD uses, and the TCD gamma default: one home for each.

WebUI v1.10.1's names are read from modules/sd_samplers_kdiffusion.py, sd_samplers_timesteps.py,
sd_samplers_lcm.py and sd_schedulers.py.  Ours are what :mod:`hypersd.webui.samplers` registers under exactly
these names: the sampler :data:`TCD_SAMPLER` and the schedules of :data:`OUR_SCHEDULES`.  Presets, the LoRA
metadata reader and the adapter all import them from here.
"""

from __future__ import annotations

import dataclasses

#: Default TCD gamma of the "TCD" sampler we register (also the TCD-LoRA card's default).
TCD_DEFAULT_GAMMA = 0.3
TCD_SAMPLER = "TCD"


@dataclasses.dataclass(frozen=True)
class ScheduleName:
    """A WebUI schedule: its name (the API's ``scheduler``) and its label (UI and infotext)."""

    name: str
    label: str


TRAILING = ScheduleName("trailing", "Trailing")
TCD_SCHEDULE = ScheduleName("tcd", "TCD")
HYPER_1STEP = ScheduleName("hyper_1step", "Hyper 1-step (t=800)")
OUR_SCHEDULES = (TRAILING, TCD_SCHEDULE, HYPER_1STEP)

WEBUI_SAMPLERS = (
    "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE",
    "Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart",
    "DDIM", "DDIM CFG++", "PLMS", "UniPC", "LCM",
)  # fmt: skip
OUR_SAMPLERS = (TCD_SAMPLER,)
WEBUI_SCHEDULES = tuple(
    ScheduleName(name, label)
    for name, label in (
        ("automatic", "Automatic"), ("uniform", "Uniform"), ("karras", "Karras"), ("exponential", "Exponential"),
        ("polyexponential", "Polyexponential"), ("sgm_uniform", "SGM Uniform"), ("kl_optimal", "KL Optimal"),
        ("align_your_steps", "Align Your Steps"), ("simple", "Simple"), ("normal", "Normal"), ("ddim", "DDIM"),
        ("beta", "Beta"),
    )
)  # fmt: skip
KNOWN_SAMPLERS = WEBUI_SAMPLERS + OUR_SAMPLERS
KNOWN_SCHEDULES = WEBUI_SCHEDULES + OUR_SCHEDULES


def schedule_label(name_or_label: str) -> str | None:
    """The label of a known schedule given its name or label (case-insensitive), else None."""
    wanted = name_or_label.strip().lower()
    return next((s.label for s in KNOWN_SCHEDULES if wanted in (s.name.lower(), s.label.lower())), None)


def sampler_name(name: str) -> str | None:
    """The canonical spelling of a known sampler name (case-insensitive), else None."""
    wanted = name.strip().lower()
    return next((s for s in KNOWN_SAMPLERS if s.lower() == wanted), None)
