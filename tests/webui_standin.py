"""The smallest honest stand-in of WebUI v1.10.1's sampler/schedule registries.

Each piece mirrors the behaviour our registration relies on, as read from WebUI's source
(modules/sd_samplers.py, sd_schedulers.py, sd_samplers_common.py, sd_samplers_kdiffusion.py,
options.py): the lists and maps, ``set_samplers`` rebuilding ``samplers_map`` from
``all_samplers``, the cached ``get_sampler_and_scheduler`` with its suffix stripping and
default fallback, and the eta plumbing of ``Sampler.initialize``.  The real check is a run in a
real WebUI (see the README's development notes).
"""

import dataclasses
import functools
import inspect
from collections import namedtuple
from types import SimpleNamespace


class SamplerData(namedtuple("SamplerData", ["name", "constructor", "aliases", "options"])):
    def total_steps(self, steps):
        return steps * 2 if self.options.get("second_order", False) else steps


@dataclasses.dataclass
class Scheduler:
    name: str
    label: str
    function: object
    default_rho: float = -1
    need_inner_model: bool = False
    aliases: list = None


class KDiffusionSampler:
    """Only what matters here: funcname/func, the eta fields, and initialize()'s eta routing."""

    def __init__(self, funcname, sd_model, options=None):
        self.funcname = funcname
        self.func = funcname
        self.eta = None
        self.eta_option_field = "eta_ancestral"
        self.eta_infotext_field = "Eta"
        self.eta_default = 1.0
        self.sd_model = sd_model

    def initialize(self, p, opts):
        self.eta = p.eta if p.eta is not None else getattr(opts, self.eta_option_field, 0.0)
        kwargs = {}
        if "eta" in inspect.signature(self.func).parameters:
            if self.eta != self.eta_default:
                p.extra_generation_params[self.eta_infotext_field] = self.eta
            kwargs["eta"] = self.eta
        return kwargs


class Options:
    def __init__(self):
        self.data = {}
        self.data_labels = {}

    def add_option(self, key, info):
        self.data_labels[key] = info
        if key not in self.data:
            self.data[key] = info.default

    def __getattr__(self, item):
        if item in ("data", "data_labels"):
            raise AttributeError(item)
        if item in self.data:
            return self.data[item]
        if item in self.data_labels:
            return self.data_labels[item].default
        raise AttributeError(item)


class OptionInfo:
    def __init__(self, default=None, label="", component=None, component_args=None, section=None, infotext=None):
        self.default, self.label, self.section, self.infotext = default, label, section, infotext

    def info(self, text):
        self.comment = text
        return self


def make_host():
    sd_samplers = SimpleNamespace()
    sd_schedulers = SimpleNamespace(Scheduler=Scheduler)
    builtin = [
        SamplerData("DPM++ 2M", None, ["k_dpmpp_2m"], {"scheduler": "karras"}),
        SamplerData("DPM++ SDE", None, ["k_dpmpp_sde"], {"scheduler": "karras", "second_order": True}),
        SamplerData("Euler a", None, ["k_euler_a"], {}),
        SamplerData("Euler", None, ["k_euler"], {}),
        SamplerData("LCM", None, ["k_lcm"], {}),
    ]
    sd_samplers.all_samplers = list(builtin)
    sd_samplers.all_samplers_map = {x.name: x for x in builtin}
    sd_samplers.samplers = []
    sd_samplers.samplers_map = {}
    sd_samplers.set_samplers_calls = 0

    def set_samplers():
        sd_samplers.set_samplers_calls += 1
        sd_samplers.samplers = sd_samplers.all_samplers
        sd_samplers.samplers_map.clear()
        for s in sd_samplers.all_samplers:
            sd_samplers.samplers_map[s.name.lower()] = s.name
            for a in s.aliases:
                sd_samplers.samplers_map[a.lower()] = s.name

    sd_samplers.set_samplers = set_samplers

    sd_schedulers.schedulers = [
        Scheduler("automatic", "Automatic", None),
        Scheduler("karras", "Karras", lambda **kw: None, default_rho=7.0),
        Scheduler("sgm_uniform", "SGM Uniform", lambda **kw: None, need_inner_model=True, aliases=["SGMUniform"]),
        Scheduler("simple", "Simple", lambda **kw: None, need_inner_model=True),
    ]
    sd_schedulers.schedulers_map = {
        **{x.name: x for x in sd_schedulers.schedulers},
        **{x.label: x for x in sd_schedulers.schedulers},
    }

    @functools.cache
    def get_sampler_and_scheduler(sampler_name, scheduler_name, *, convert_automatic=True):
        default_sampler = sd_samplers.samplers[0]
        found = sd_schedulers.schedulers_map.get(scheduler_name, sd_schedulers.schedulers[0])
        name = sampler_name or default_sampler.name
        for scheduler in sd_schedulers.schedulers:
            for option in [scheduler.label, scheduler.name, *(scheduler.aliases or [])]:
                if name.endswith(" " + option):
                    found = scheduler
                    name = name[0 : -(len(option) + 1)]
                    break
        sampler = sd_samplers.all_samplers_map.get(name, default_sampler)
        if convert_automatic and sampler.options.get("scheduler", None) == found.name:
            found = sd_schedulers.schedulers[0]
        return sampler.name, found.label

    sd_samplers.get_sampler_and_scheduler = get_sampler_and_scheduler
    set_samplers()

    shared = SimpleNamespace(opts=Options(), OptionInfo=OptionInfo)
    return SimpleNamespace(
        sd_samplers=sd_samplers,
        sd_samplers_common=SimpleNamespace(SamplerData=SamplerData),
        sd_samplers_kdiffusion=SimpleNamespace(KDiffusionSampler=KDiffusionSampler),
        sd_schedulers=sd_schedulers,
        shared=shared,
        gr=SimpleNamespace(Slider=object),
    )


def api_script_args(params, request_args=()):
    """What our script's process() receives for an API request with an ``infotext`` and ``request_args`` in
    ``alwayson_scripts`` (WebUI v1.10.1 modules/api/api.py, transcribed): ``apply_infotext`` calls each PasteField's
    function (ours: :func:`hypersd.webui.accordion_events.pasted_values`; a gr.update() counts as no value) and casts
    the value to ``type(component.value)``; ``init_script_args`` starts from the UI's default values, puts the
    infotext's values in, then the request's own args over them."""
    from hypersd.settings import FIELD_NAMES, FIELDS, HyperSettings
    from hypersd.webui.accordion_events import pasted_values

    # script.ui() gives float fields float values: type(component.value) is float there
    defaults = zip(FIELDS, HyperSettings().to_ui_values(), strict=True)
    components = [float(v) if spec.kind is float else v for spec, v in defaults]
    args = list(components)
    pasted = pasted_values(params)
    for index, name in enumerate(FIELD_NAMES):
        if name in pasted:
            value, target = pasted[name], type(components[index])
            args[index] = value if isinstance(value, target) else target(value)
    args[: len(request_args)] = request_args
    return args
