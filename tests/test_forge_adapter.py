"""The Forge adapter against a stand-in of Forge's objects (tests/forge_standin.py, modelled on Forge's source).

The real check is a run in a real Forge (README, "Works in"); these pin what our code relies on.
"""

import re
from types import SimpleNamespace

import pytest
import torch
from forge_standin import Flux, ForgeScheduleLinker, Prediction, StableDiffusion, make_forge_host
from tiny_models import TinyEpsModel
from webui_standin import make_host

from hypersd import plan_outcomes, schedules
from hypersd.catalog import CATALOG, FLUX_BASE, FLUX_CATALOG
from hypersd.denoiser import EpsDenoiser
from hypersd.forge import host_state
from hypersd.forge.detect import is_forge
from hypersd.forge.samplers import register_all
from hypersd.loras import LoraInfo
from hypersd.plan import CurrentValues, make_plan
from hypersd.plan_apply import apply_plan
from hypersd.presets import PRESET_IDS
from hypersd.sampling import sample_tcd
from hypersd.settings import HyperSettings
from hypersd.webui import profile
from hypersd.webui.host import HostChanges
from hypersd.webui.samplers import (
    GAMMA_DEFAULT,
    GAMMA_INFOTEXT,
    SCHEDULES,
    make_schedule_function,
    refuse_flow_model,
    webui_sample_tcd,
)

ON = HyperSettings(enabled=True)
FLUX_LORAS = {n: LoraInfo(n) for n in ("Hyper-FLUX.1-dev-8steps-lora", "Hyper-FLUX.1-dev-16steps-lora")}


def names(host):
    return [s.name for s in host.sd_samplers.all_samplers]


def forge_profile():
    from hypersd.forge.setup import FORGE  # imports nothing of Forge at module level

    return FORGE


# ------------------------------------------------------------------------------------------------ detection


def test_forge_is_recognised_by_what_it_provides():
    forge, a1111 = make_forge_host().sd_samplers, make_host().sd_samplers
    has_backend = {"backend": object()}.get
    assert is_forge(forge, find_spec=has_backend)
    assert not is_forge(a1111, find_spec=has_backend)  # A1111 v1.10: no add_sampler
    assert not is_forge(forge, find_spec=lambda name: None)  # add_sampler alone is not enough


# ------------------------------------------------------------------------------------------------ registration


def test_tcd_goes_in_through_add_sampler_with_the_schedules():
    host = make_forge_host()
    before = names(host)
    register_all(host, HostChanges())
    sd_samplers = host.sd_samplers
    assert sd_samplers.add_sampler_calls == 1 and names(host) == [*before, "TCD"]
    assert sd_samplers.all_samplers_map["TCD"].name == "TCD"  # the map add_sampler rebound
    assert sd_samplers.samplers[0].name == "DPM++ 2M" and sd_samplers.samplers_map["k_tcd"] == "TCD"
    assert [s.label for s in host.sd_schedulers.schedulers][-3:] == [s.label for s in SCHEDULES]
    assert sd_samplers.get_sampler_and_scheduler("TCD", "TCD") == ("TCD", "Automatic")
    assert sd_samplers.get_sampler_and_scheduler("Euler", "Trailing") == ("Euler", "Trailing")


def test_unload_gives_forge_back_its_registries():
    host, fresh = make_forge_host(), make_forge_host()
    changes = HostChanges()
    register_all(host, changes)
    assert register_all(host, changes) == []  # a second load changes nothing
    changes.undo_all()
    assert names(host) == names(fresh)
    assert set(host.sd_samplers.all_samplers_map) == set(fresh.sd_samplers.all_samplers_map)
    assert host.sd_samplers.samplers_map == fresh.sd_samplers.samplers_map
    assert [s.label for s in host.sd_schedulers.schedulers] == [s.label for s in fresh.sd_schedulers.schedulers]
    assert set(host.sd_schedulers.schedulers_map) == set(fresh.sd_schedulers.schedulers_map)
    assert host.sd_samplers.get_sampler_and_scheduler("TCD", "TCD") == ("DPM++ 2M", "Automatic")


def test_a_stale_tcd_from_an_earlier_load_is_replaced_not_kept():
    host = make_forge_host()
    register_all(host, HostChanges())  # its unload never ran
    stale = host.sd_samplers.all_samplers_map["TCD"]
    register_all(host, HostChanges())
    assert names(host).count("TCD") == 1 and host.sd_samplers.all_samplers_map["TCD"] is not stale


def test_gamma_is_the_eta_with_a_default_option_and_tcd_gamma_in_the_infotext():
    host = make_forge_host()
    register_all(host, HostChanges())
    sampler = host.sd_samplers.all_samplers_map["TCD"].constructor(StableDiffusion())
    opts = host.shared.opts
    p = SimpleNamespace(eta=None, extra_generation_params={})
    assert sampler.initialize(p, opts) == {"eta": GAMMA_DEFAULT} and p.extra_generation_params == {}
    p = SimpleNamespace(eta=0.7, extra_generation_params={})
    assert sampler.initialize(p, opts) == {"eta": 0.7} and p.extra_generation_params == {GAMMA_INFOTEXT: 0.7}


def test_tcd_on_forges_schedule_linker_equals_tcd_on_the_discrete_schedule():
    """Forge hands the sampler a ForgeScheduleLinker (nearest-index sigma_to_t): on our TCD grid the sampler takes
    the same steps as on k-diffusion's discrete schedule, and our schedule function reads the linker's sigmas."""
    torch.manual_seed(0)
    acp = schedules.alphas_cumprod()
    den = EpsDenoiser(TinyEpsModel(), acp)
    linker = ForgeScheduleLinker(Prediction(den.sigmas), sd_model=StableDiffusion())
    tcd_schedule = next(s for s in SCHEDULES if s.label == "TCD")
    sigmas = make_schedule_function(tcd_schedule)(4, inner_model=linker)
    assert torch.allclose(sigmas, schedules.timesteps_to_sigmas(schedules.tcd_timesteps(4), den.sigmas).float())

    class CFGDenoiserKDiffusion:  # sd_samplers_kdiffusion.py: its inner_model is the linker
        inner_model = linker

        def __call__(self, x, sigma, **kw):
            return den(x, sigma, **kw)

    x = torch.randn(1, 4, 6, 5) * sigmas[0]
    noises = [torch.randn_like(x) for _ in range(4)]

    def run(model):
        pending = iter(noises)
        return sample_tcd(model, x, sigmas, eta=0.3, noise_sampler=lambda _s, _sn: next(pending))

    assert torch.allclose(run(CFGDenoiserKDiffusion()), run(den), atol=1e-5)


# ------------------------------------------------------------------------------------------------ model type, profile


def test_model_type_of_forges_engines():
    assert host_state.model_base(Flux(dev=True)) == FLUX_BASE
    assert host_state.model_base(Flux(dev=False)) == host_state.FLUX_SCHNELL
    assert host_state.model_base(StableDiffusion()) == "sd15"
    assert host_state.model_base(None) is None
    impostor = type("Flux", (), {"use_distilled_cfg_scale": True})()  # a class called Flux elsewhere
    assert host_state.model_base(impostor) is None


def test_forge_offers_the_flux_presets_and_leaves_cfg1_to_its_backend():
    forge = forge_profile()
    assert forge.preset_ids[-2:] == ("hyper-flux-8step", "hyper-flux-16step")
    assert "hyper-sdxl-1step-unet" not in forge.preset_ids
    assert [i for i in forge.preset_ids if i in PRESET_IDS] == [i for i in PRESET_IDS if i != "hyper-sdxl-1step-unet"]
    assert not forge.cfg1_patch and profile.A1111.cfg1_patch
    assert profile.A1111.preset_ids == PRESET_IDS  # A1111's accordion: unchanged, no Flux buttons
    assert profile.A1111.catalog == CATALOG and forge.catalog == CATALOG + FLUX_CATALOG  # the Models tab's files


def test_the_forge_profile_is_undone_on_unload():
    changes = HostChanges()
    assert profile.current() is profile.A1111
    profile.use(forge_profile(), changes)
    assert profile.current().name == "Stable Diffusion WebUI Forge"
    changes.undo_all()
    assert profile.current() is profile.A1111


def test_a_forge_flux_job_gets_the_preset_and_distilled_guidance():
    """process() in Forge: the plan from the loaded engine's type, applied to a p with Forge's Flux fields."""
    base = forge_profile().model_base(Flux(dev=True))
    loras = {"Hyper-FLUX.1-dev-16steps-lora": LoraInfo("Hyper-FLUX.1-dev-16steps-lora")}
    settings = HyperSettings.from_api([True, "hyper-flux-16step"])
    p = SimpleNamespace(
        prompt="a fox", all_prompts=["a fox"], main_prompt="a fox", sampler_name="Euler", scheduler="Simple",
        steps=20, cfg_scale=1.0, eta=None, distilled_cfg_scale=3.5, width=896, height=1152,
        extra_generation_params={},
    )  # fmt: skip
    plan = make_plan(settings, base, loras, p.all_prompts, CurrentValues.from_processing(p))
    apply_plan(p, plan)
    assert (p.steps, p.cfg_scale, p.distilled_cfg_scale) == (16, 1.0, 3.5)
    assert p.all_prompts == ["a fox <lora:Hyper-FLUX.1-dev-16steps-lora:0.125>"]


def test_an_sd_preset_on_forges_flux_engine_is_refused():
    base = forge_profile().model_base(Flux(dev=True))
    plan = make_plan(HyperSettings(enabled=True), base, {}, ["x"], CurrentValues())
    assert isinstance(plan.refusals[0], plan_outcomes.PresetForOtherModelFamily)


def test_the_xyz_axis_takes_the_presets_of_the_running_host():
    from hypersd.webui import xyz

    p = SimpleNamespace()
    try:
        xyz.confirm_presets(p, ["hyper-flux-8step"])
    except RuntimeError as error:
        assert "unknown preset(s) hyper-flux-8step" in str(error)  # A1111: no Flux on the axis
    else:
        raise AssertionError("A1111's axis took a Flux preset")
    changes = HostChanges()
    profile.use(forge_profile(), changes)
    try:
        xyz.confirm_presets(p, ["hyper-flux-8step", "hyper-4step"])
        xyz.apply_preset(p, "hyper-flux-8step", [])
        assert getattr(p, xyz.XYZ_ATTR) == "hyper-flux-8step"
    finally:
        changes.undo_all()


def test_a_preset_forge_does_not_offer_is_refused_with_the_ones_it_does():
    forge = forge_profile()
    message = plan_outcomes.render(plan_outcomes.PresetNotOnHost("hyper-sdxl-1step-unet", forge.name, forge.preset_ids))
    assert "does not run in Stable Diffusion WebUI Forge yet" in message and "hyper-flux-8step" in message


# ------------------------------------------------------------------------------------------------ flow models


def flux_sigmas(mu=1.15, n=10000):
    """backend/modules/k_prediction.py ``PredictionFlux``: arange(1, n+1)/n, shifted by diffusers' time_shift(mu, 1)."""
    t = torch.arange(1, n + 1) / n
    return torch.exp(torch.tensor(mu)) / (torch.exp(torch.tensor(mu)) + (1 / t - 1))


def test_tcd_and_our_schedules_refuse_forges_flux_with_what_to_use():
    linker = ForgeScheduleLinker(Prediction(flux_sigmas()), sd_model=Flux())
    for spec in SCHEDULES:
        with pytest.raises(
            RuntimeError, match=re.escape(f"the {spec.label} schedule is for SD1.5/SDXL") + ".*Euler with the Simple"
        ):
            make_schedule_function(spec)(4, inner_model=linker)

    class CFGDenoiser:
        inner_model = linker

        def __call__(self, x, sigma, **kw):
            raise AssertionError("the model must not run")

    x = torch.randn(1, 4, 6, 5)
    with pytest.raises(RuntimeError, match="the TCD sampler is for SD1.5/SDXL-type models.*flow-matching"):
        webui_sample_tcd(CFGDenoiser(), x, torch.tensor([1.0, 0.5, 0.0]), noise_sampler=lambda *_: torch.zeros_like(x))


def test_an_sd_sigma_table_is_not_taken_for_a_flow_model():
    den = EpsDenoiser(TinyEpsModel(), schedules.alphas_cumprod())
    refuse_flow_model(den.sigmas, "TCD")  # SD1.5's table: σ up to ≈ 14.6
    with pytest.raises(RuntimeError):
        refuse_flow_model(flux_sigmas(mu=0.5), "TCD")


def test_a_typed_hyper_flux_tag_configures_like_its_button():
    typed = make_plan(ON, FLUX_BASE, FLUX_LORAS, ["a cat <lora:Hyper-FLUX.1-dev-8steps-lora:0.12>"], CurrentValues())
    button = make_plan(
        ON.replace(preset="hyper-flux-8step", weight=0.12), FLUX_BASE, FLUX_LORAS, ["a cat"], CurrentValues()
    )
    assert typed.ok and button.ok
    for field in ("sampler_name", "scheduler", "steps", "cfg_scale", "distilled_cfg_scale", "lora_name", "lora_weight"):
        assert getattr(typed, field) == getattr(button, field), field
    assert (typed.steps, typed.distilled_cfg_scale, typed.lora_weight) == (8, 3.5, 0.12)


def test_a_typed_hyper_flux_tag_on_an_sd_model_is_refused():
    result = make_plan(ON, "sd15", FLUX_LORAS, ["a cat <lora:hyper-flux.1-dev-16steps:0.125>"], CurrentValues())
    assert [type(r) for r in result.refusals] == [plan_outcomes.TagForOtherModel]
    assert "is a FLUX.1-dev LoRA but the loaded model is SD1.5" in result.errors[0]


# ------------------------------------------------------------------------------------------------ Train tab


def test_forge_hands_the_engine_the_tokenizers_it_ships(tmp_path):
    """Forge keeps CLIP's tokenizers under backend/huggingface/ (no HF cache): a single-file run gets them."""
    from hypersd.train.tab_form import TrainForm, request_from_form
    from hypersd.webui.train_host import shipped_tokenizer_dir

    rel = forge_profile().tokenizer_dir
    assert shipped_tokenizer_dir(str(tmp_path), rel) is None  # not there (a trimmed install): the HF cache, as before
    folder = tmp_path / rel / "tokenizer"
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text("{}")
    assert shipped_tokenizer_dir(str(tmp_path), rel) == str(tmp_path / rel)
    assert profile.A1111.tokenizer_dir is None and shipped_tokenizer_dir(str(tmp_path), None) is None

    class Host:
        def checkpoints(self):
            return {"house [abc]": "/m/house.safetensors"}

        def lora_dir(self):
            return tmp_path / "Lora"

        def work_dir(self):
            return tmp_path / "work"

        def tokenizer_dir(self):
            return shipped_tokenizer_dir(str(tmp_path), rel)

    request = request_from_form(Host(), TrainForm(checkpoint="house [abc]", data="prompts.txt"))
    assert request.tokenizer == str(tmp_path / rel)
