"""A stand-in of the pieces of Stable Diffusion WebUI Forge our adapter touches, modelled on Forge's source
(lllyasviel/stable-diffusion-webui-forge, main of June 2025, commit dfdcbab6).

- ``modules/sd_samplers.py``: ``add_sampler()`` appends when the name is new, *rebinds* ``all_samplers_map`` to a
  new dict and calls ``set_samplers()``; ``set_samplers()`` makes ``samplers`` the very ``all_samplers`` list.
- ``modules/sd_samplers_kdiffusion.py`` / ``sd_samplers_common.py``: the same ``KDiffusionSampler`` eta plumbing as
  A1111 (reused from :mod:`webui_standin`); Forge's extra samplers (HeunPP2, IPNDM, DEIS, DDPM) and schedules
  (Turbo, Align Your Steps GITS/11/32) are in the lists, since our names must not clash with them.
- ``k_diffusion/external.py``: ``ForgeScheduleLinker`` (``sigmas``, ``sigma_to_t`` = ``predictor.timestep``,
  ``t_to_sigma`` = ``predictor.sigma``), and ``backend/modules/k_prediction.py``'s ``Prediction.timestep``
  (nearest log-sigma index) and ``sigma`` (log-linear interpolation).
- ``backend/diffusion_engine/{sd15,flux}.py``: the engines' model-type flags; ``Flux`` sets none of ``is_sd1`` ...
  and sets ``use_distilled_cfg_scale`` for dev only.
"""

from types import SimpleNamespace

import torch
from webui_standin import SamplerData, Scheduler, make_host


def make_forge_host():
    host = make_host()
    sd_samplers, sd_schedulers = host.sd_samplers, host.sd_schedulers
    for name in ("HeunPP2", "IPNDM", "IPNDM_V", "DEIS", "DDPM"):
        sd_samplers.all_samplers.append(SamplerData(name, None, [name.lower()], {}))
    sd_samplers.all_samplers_map = {x.name: x for x in sd_samplers.all_samplers}
    sd_samplers.add_sampler_calls = 0

    def add_sampler(sampler):
        sd_samplers.add_sampler_calls += 1
        if sampler.name not in [x.name for x in sd_samplers.all_samplers]:
            sd_samplers.all_samplers.append(sampler)
            sd_samplers.all_samplers_map = {x.name: x for x in sd_samplers.all_samplers}
            sd_samplers.set_samplers()

    sd_samplers.add_sampler = add_sampler
    for name, label in (("turbo", "Turbo"), ("align_your_steps_GITS", "Align Your Steps GITS"),
                        ("align_your_steps_11", "Align Your Steps 11"), ("align_your_steps_32", "Align Your Steps 32")):  # fmt: skip
        entry = Scheduler(name, label, lambda **kw: None)
        sd_schedulers.schedulers.append(entry)
        sd_schedulers.schedulers_map[name] = sd_schedulers.schedulers_map[label] = entry
    sd_samplers.set_samplers()
    return host


class Prediction:
    """backend/modules/k_prediction.py ``Prediction``: the per-timestep sigma table and its two mappings."""

    def __init__(self, sigmas):
        self.sigmas = sigmas.float()
        self.log_sigmas = self.sigmas.log()

    def timestep(self, sigma):
        dists = sigma.log() - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape)

    def sigma(self, timestep):
        t = torch.clamp(timestep.float(), min=0, max=len(self.sigmas) - 1)
        low, high, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp()


class ForgeScheduleLinker:
    """k_diffusion/external.py ``ForgeScheduleLinker``; ``inner_model`` is ``shared.sd_model`` there."""

    def __init__(self, predictor, sd_model=None):
        self.predictor, self.inner_model = predictor, sd_model

    @property
    def sigmas(self):
        return self.predictor.sigmas

    def sigma_to_t(self, sigma, quantize=None):
        return self.predictor.timestep(sigma)

    def t_to_sigma(self, t):
        return self.predictor.sigma(t)


class ForgeDiffusionEngine:
    """backend/diffusion_engine/base.py ``fix_for_webui_backward_compatibility``: every flag False."""

    def __init__(self):
        self.use_distilled_cfg_scale = False
        self.is_sd1 = self.is_sd2 = self.is_sdxl = self.is_sd3 = False
        self.forge_objects = SimpleNamespace(unet=None)


class StableDiffusion(ForgeDiffusionEngine):
    def __init__(self):
        super().__init__()
        self.is_sd1 = True


class Flux(ForgeDiffusionEngine):
    def __init__(self, dev=True):
        super().__init__()
        self.use_distilled_cfg_scale = dev  # flux.py: set for dev, not for schnell (mu=1.0)


Flux.__module__ = "backend.diffusion_engine.flux"
StableDiffusion.__module__ = "backend.diffusion_engine.sd15"
