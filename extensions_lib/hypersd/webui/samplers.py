"""Register the TCD sampler and the Trailing / TCD / Hyper 1-step schedules in WebUI.

Everything here takes WebUI's modules as arguments (``host``), so the logic is tested against
small stand-ins of WebUI's registries, and runs unchanged against the real ones.
Facts this relies on (WebUI v1.10.1, read from its source):
- samplers live in ``sd_samplers.all_samplers`` / ``all_samplers_map``; ``set_samplers()``
  rebuilds the visible lists; the API validates names against ``all_samplers_map``;
- ``samplers[0]`` is WebUI's default and the fallback for unknown names: append, never insert;
- ``get_sampler_and_scheduler`` is ``functools.cache``d and strips a trailing
  " <schedule label/name/alias>" from sampler names, so our schedule names must never equal
  the last word of a sampler name;
- schedules live in ``sd_schedulers.schedulers`` **and** ``schedulers_map`` (names and labels);
- a ``KDiffusionSampler`` routes ``p.eta`` (else ``opts.<eta_option_field>``) into the sampler
  function's ``eta`` argument and writes ``eta_infotext_field`` to the infotext when it differs
  from ``eta_default``.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

from hypersd import schedules
from hypersd.sampler_names import HYPER_1STEP, TCD_DEFAULT_GAMMA, TCD_SAMPLER, TCD_SCHEDULE, TRAILING
from hypersd.sampling import find_schedule, sample_tcd
from hypersd.webui.host import HostChanges

TCD_SAMPLER_NAME = TCD_SAMPLER
TCD_SAMPLER_ALIASES = ["k_tcd", "hypersd_tcd"]
GAMMA_OPTION = "hypersd_tcd_gamma"
GAMMA_INFOTEXT = "TCD gamma"
GAMMA_DEFAULT = TCD_DEFAULT_GAMMA


@dataclasses.dataclass(frozen=True)
class ScheduleSpec:
    name: str
    label: str
    timesteps: Any  # (n, train_steps) -> list[int]
    aliases: tuple[str, ...] = ()


SCHEDULES = (
    ScheduleSpec(
        TRAILING.name,
        TRAILING.label,
        lambda n, T: schedules.trailing_timesteps(n, train_steps=T),
        ("trailing_spacing",),
    ),
    ScheduleSpec(
        TCD_SCHEDULE.name, TCD_SCHEDULE.label, lambda n, T: schedules.tcd_timesteps(min(n, 50), train_steps=T)
    ),
    ScheduleSpec(HYPER_1STEP.name, HYPER_1STEP.label, lambda n, T: schedules.hyper_1step_timesteps(n), ("hyper1step",)),
)


def per_timestep_sigmas(inner_model: Any):
    """The model's sigma at every training timestep, indexed by timestep.

    k-diffusion's CompVisDenoiser (most samplers) holds exactly that table. WebUI's LCM sampler wraps the model in
    an ``LCMCompVisDenoiser`` whose table holds only LCM's 50-point grid (t = 19, 39, … 999), so the full table is
    rebuilt from the model's ᾱ with the same formula (the values agree wherever both have an entry); that sampler
    then runs each sigma at its nearest grid timestep (the 1-step UNet's t=800 at 799).
    """
    table = inner_model.sigmas
    acp = getattr(getattr(inner_model, "inner_model", None), "alphas_cumprod", None)
    if acp is not None and len(acp) > len(table):
        acp = acp.detach().to("cpu", table.dtype)
        table = ((1 - acp) / acp) ** 0.5
    return table


#: The largest sigma of a rectified-flow model's table (Forge's FLUX: x_t = (1 - σ)·x0 + σ·noise, σ in (0, 1]); every
#: SD1.5/SDXL table (ε or v prediction, σ = √((1 − ᾱ)/ᾱ)) goes far above it (σ_max ≈ 14.6).
FLOW_SIGMA_MAX = 1.0


def refuse_flow_model(table: Any, what: str) -> None:
    """Our schedules sit on a 1000-step ᾱ grid and TCD re-noises as x0 + σ·noise: both are wrong for a flow model."""
    if table is not None and len(table) and float(table.max()) <= FLOW_SIGMA_MAX:
        raise RuntimeError(
            f"Hyper-SD: {what} is for SD1.5/SDXL-type models; the loaded model is a flow-matching model (FLUX): use "
            "Euler with the Simple schedule (what the Hyper-FLUX presets set)"
        )


def make_schedule_function(spec: ScheduleSpec):
    """A WebUI schedule: ``fn(n, sigma_min, sigma_max, inner_model, device)`` → n+1 sigmas ending in 0."""

    def schedule(n, sigma_min=None, sigma_max=None, inner_model=None, device=None):
        if inner_model is None:
            raise RuntimeError(f"Hyper-SD: the {spec.label} schedule needs the model's sigma table (inner_model)")
        table = per_timestep_sigmas(inner_model)
        refuse_flow_model(table, f"the {spec.label} schedule")
        sigmas = schedules.timesteps_to_sigmas(spec.timesteps(int(n), len(table)), table)
        return sigmas.to(device) if device is not None else sigmas

    schedule.__name__ = f"hypersd_{spec.name}_schedule"
    return schedule


def webui_sample_tcd(
    model, x, sigmas, extra_args=None, callback=None, disable=None, eta=GAMMA_DEFAULT, noise_sampler=None
):
    """TCD with WebUI's seeded noise (k-diffusion's ``default_noise_sampler``, which WebUI hijacks)."""
    schedule = find_schedule(model)
    refuse_flow_model(getattr(schedule, "sigmas", None), "the TCD sampler")
    if noise_sampler is None:
        import k_diffusion.sampling as kds  # the host's k-diffusion, imported only inside WebUI

        make_noise = getattr(kds, "default_noise_sampler", None)
        noise_sampler = make_noise(x) if make_noise else (lambda _s, _sn: kds.torch.randn_like(x))
    return sample_tcd(model, x, sigmas, extra_args, callback, disable, eta, noise_sampler, schedule=schedule)


def make_tcd_sampler_class(kdiffusion_sampler_base: type) -> type:
    """Subclass WebUI's KDiffusionSampler so that gamma flows through WebUI's eta plumbing."""

    class HyperSDTCDSampler(kdiffusion_sampler_base):
        def __init__(self, sd_model):
            super().__init__(webui_sample_tcd, sd_model)
            self.eta_option_field = GAMMA_OPTION
            self.eta_infotext_field = GAMMA_INFOTEXT
            self.eta_default = GAMMA_DEFAULT

    return HyperSDTCDSampler


def clear_sampler_cache(host) -> None:
    cached = getattr(host.sd_samplers, "get_sampler_and_scheduler", None)
    if cached is not None and hasattr(cached, "cache_clear"):
        cached.cache_clear()


def check_schedule_names(host, specs=SCHEDULES) -> None:
    """Refuse names that WebUI would confuse with a sampler suffix or with an existing schedule."""
    last_words = {s.name.split(" ")[-1] for s in host.sd_samplers.all_samplers if " " in s.name}
    existing = {
        n
        for s in host.sd_schedulers.schedulers
        if not getattr(s.function, "__name__", "").startswith("hypersd_")
        for n in (s.name, s.label, *(s.aliases or []))
    }
    for spec in specs:
        for word in (spec.name, spec.label, *spec.aliases):
            if word in last_words:
                raise RuntimeError(f"Hyper-SD: schedule name {word!r} equals the last word of a sampler name")
            if word in existing:
                raise RuntimeError(f"Hyper-SD: schedule name {word!r} is already taken by another schedule")


def tcd_sampler_data(host) -> Any:
    """The host's ``SamplerData`` of our TCD sampler (its default schedule: TCD)."""
    cls = make_tcd_sampler_class(host.sd_samplers_kdiffusion.KDiffusionSampler)
    return host.sd_samplers_common.SamplerData(
        TCD_SAMPLER_NAME, lambda model: cls(model), list(TCD_SAMPLER_ALIASES), {"scheduler": TCD_SCHEDULE.name}
    )


def register_tcd_sampler(host) -> Any:
    """Append the TCD sampler; returns its undo function."""
    sd_samplers = host.sd_samplers
    data = tcd_sampler_data(host)
    # A stale entry (an earlier load whose unload callback never ran) is replaced, not duplicated.
    sd_samplers.all_samplers[:] = [s for s in sd_samplers.all_samplers if s.name != TCD_SAMPLER_NAME]
    sd_samplers.all_samplers.append(data)
    sd_samplers.all_samplers_map[TCD_SAMPLER_NAME] = data
    sd_samplers.set_samplers()
    clear_sampler_cache(host)

    def undo():
        sd_samplers.all_samplers[:] = [s for s in sd_samplers.all_samplers if s is not data]
        if sd_samplers.all_samplers_map.get(TCD_SAMPLER_NAME) is data:
            del sd_samplers.all_samplers_map[TCD_SAMPLER_NAME]
        sd_samplers.set_samplers()
        clear_sampler_cache(host)

    return undo


def register_schedules(host, specs=SCHEDULES) -> Any:
    """Append our schedules to ``schedulers`` and ``schedulers_map``; returns the undo function."""
    sd_schedulers = host.sd_schedulers
    ours = {s.name for s in specs} | {s.label for s in specs} | {a for s in specs for a in s.aliases}
    sd_schedulers.schedulers[:] = [s for s in sd_schedulers.schedulers if s.name not in ours]
    check_schedule_names(host, specs)
    added = []
    for spec in specs:
        entry = sd_schedulers.Scheduler(
            spec.name, spec.label, make_schedule_function(spec), need_inner_model=True, aliases=list(spec.aliases)
        )
        sd_schedulers.schedulers.append(entry)
        for key in (spec.name, spec.label):
            sd_schedulers.schedulers_map[key] = entry
        added.append(entry)
    clear_sampler_cache(host)

    def undo():
        sd_schedulers.schedulers[:] = [s for s in sd_schedulers.schedulers if all(s is not a for a in added)]
        for key, value in list(sd_schedulers.schedulers_map.items()):
            if any(value is a for a in added):
                del sd_schedulers.schedulers_map[key]
        clear_sampler_cache(host)

    return undo


def gamma_option_info(host):
    """The WebUI setting that holds TCD's default gamma (also restored from the "TCD gamma" infotext)."""
    shared = host.shared
    kwargs = {"section": ("hypersd", "Hyper-SD"), "infotext": GAMMA_INFOTEXT}
    info = shared.OptionInfo(
        GAMMA_DEFAULT,
        "TCD gamma (eta) of the TCD sampler",
        host.gr.Slider,
        {"minimum": 0.0, "maximum": 1.0, "step": 0.01},
        **kwargs,
    )
    if hasattr(info, "info"):
        info = info.info("0 = deterministic and detailed, 1 = LCM-like; Hyper-SD's unified LoRA likes 0.3-1.0")
    return info


def register_gamma_option(host) -> Any:
    opts = host.shared.opts
    opts.add_option(GAMMA_OPTION, gamma_option_info(host))

    def undo():
        opts.data_labels.pop(GAMMA_OPTION, None)

    return undo


def register_all(host, changes: HostChanges, register_sampler=register_tcd_sampler) -> list[str]:
    """Apply every sampler-related host change once; returns the names applied now (Forge passes its own
    ``register_sampler``, :func:`hypersd.forge.samplers.register_tcd_sampler`)."""
    applied = []
    for name, fn in (
        ("option:" + GAMMA_OPTION, register_gamma_option),
        ("schedules", register_schedules),
        ("sampler:" + TCD_SAMPLER_NAME, register_sampler),
    ):
        if changes.apply(name, lambda fn=fn: fn(host)):
            applied.append(name)
    return applied


def webui_host():
    """WebUI's real modules, bundled the way the functions above expect them."""
    import gradio as gr
    from modules import sd_samplers, sd_samplers_common, sd_samplers_kdiffusion, sd_schedulers, shared

    return SimpleNamespace(
        sd_samplers=sd_samplers,
        sd_samplers_common=sd_samplers_common,
        sd_samplers_kdiffusion=sd_samplers_kdiffusion,
        sd_schedulers=sd_schedulers,
        shared=shared,
        gr=gr,
    )
