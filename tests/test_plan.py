"""make_plan / apply_plan on a stand-in of WebUI v1.10.1's processing object."""

import copy

import pytest

from hypersd import loratags
from hypersd.infotext import read_infotext
from hypersd.loras import LoraInfo, find_lora, newest_distilled_lora
from hypersd.plan import CurrentValues, fit_size, make_plan
from hypersd.plan_apply import HyperPlanError, apply_plan
from hypersd.prompt_tags import settings_from_prompt_tags
from hypersd.settings import HyperSettings

XL = {"ss_base_model_version": "sdxl_base_v1-0"}
SD1 = {"ss_base_model_version": "sd_v1"}


class StandInP:
    """The attributes of StableDiffusionProcessingTxt2Img (modules/processing.py v1.10.1) that we touch,
    in the state scripts.process(p) sees them: setup_prompts() has filled all_prompts / all_hr_prompts."""

    def __init__(self, prompt="a cat", batch=3, enable_hr=False, hr_prompt="", width=1024, height=1024, **kw):
        self.prompt = prompt
        self.hr_prompt = hr_prompt
        self.all_prompts = [f"{prompt} #{i}" for i in range(batch)]
        self.main_prompt = self.all_prompts[0]
        self.enable_hr = enable_hr
        self.all_hr_prompts = [f"{hr_prompt or prompt} #{i}" for i in range(batch)] if enable_hr else None
        self.all_negative_prompts = ["ugly"] * batch
        self.sampler_name = "DPM++ 2M"
        self.scheduler = "Automatic"
        self.steps = 20
        self.cfg_scale = 7.0
        self.eta = None
        self.width, self.height = width, height
        self.hr_second_pass_steps = 0
        self.hr_sampler_name = None
        self.hr_scheduler = None
        self.denoising_strength = 0.7
        self.extra_generation_params = {}
        self.__dict__.update(kw)


def loras(*infos):
    return {i.name: i for i in infos}


HYPER_XL_4 = LoraInfo("Hyper-SDXL-4steps-lora", metadata=XL)
HYPER_SD15_4 = LoraInfo("Hyper-SD15-4steps-lora", metadata=SD1)
ALL = loras(HYPER_XL_4, HYPER_SD15_4, LoraInfo("Hyper-SDXL-8steps-CFG-lora", metadata=XL), LoraInfo("style"))
ON = HyperSettings(enabled=True)


def plan_for(p, settings=ON, base="sdxl", available=ALL, **kw):
    current = CurrentValues.from_processing(p, **kw)
    return make_plan(settings, base, available, p.all_prompts, current, hr_prompts=p.all_hr_prompts)


def test_off_touches_nothing():
    p = StandInP(enable_hr=True)
    before = copy.deepcopy(vars(p))
    plan = plan_for(p, HyperSettings(enabled=False, preset="lightning-4step"))
    assert not plan.enabled and plan.errors == () and plan.infotext == ()
    assert apply_plan(p, plan) == []
    assert vars(p) == before


def test_default_preset_on_sdxl_sets_the_recipe_and_one_tag_per_prompt():
    p = StandInP(batch=3)
    shared = p.extra_generation_params
    plan = plan_for(p)
    assert plan.ok, plan.errors
    assert (plan.sampler_name, plan.scheduler, plan.steps, plan.cfg_scale, plan.eta) == ("TCD", "TCD", 4, 1.0, 0.3)
    apply_plan(p, plan)
    assert (p.sampler_name, p.scheduler, p.steps, p.cfg_scale, p.eta) == ("TCD", "TCD", 4, 1.0, 0.3)
    tag = "<lora:Hyper-SDXL-4steps-lora:1>"
    assert p.all_prompts == [f"a cat #{i} {tag}" for i in range(3)]
    assert p.main_prompt == p.all_prompts[0] and p.prompt == f"a cat {tag}"
    assert p.hr_prompt == ""  # empty means "same as prompt": left alone
    # The infotext dict was replaced, not mutated (it may be shared between jobs).
    assert shared == {} and p.extra_generation_params is not shared
    assert p.extra_generation_params["Hyper-SD"].startswith("v1 preset=hyper-4step")
    assert plan.status == "Hyper-SD: Hyper-SD 4-step (SDXL) — TCD + TCD, 4 steps, CFG 1, gamma 0.3, " + tag


def test_applying_twice_never_doubles_the_tag():
    p = StandInP(enable_hr=True, hr_prompt="a big cat")
    plan = plan_for(p)
    apply_plan(p, plan)
    snapshot = copy.deepcopy(vars(p))
    assert apply_plan(p, plan) == []
    assert vars(p) == snapshot
    for prompt in [*p.all_prompts, *p.all_hr_prompts, p.prompt, p.hr_prompt, p.main_prompt]:
        assert prompt.count("<lora:") == 1, prompt


def test_hires_prompts_get_the_tag_and_hires_stays_few_step():
    p = StandInP(enable_hr=True, hr_prompt="a big cat", hr_second_pass_steps=20, hr_sampler_name="Euler a")
    plan = plan_for(p)
    apply_plan(p, plan)
    assert all(x.endswith("<lora:Hyper-SDXL-4steps-lora:1>") for x in p.all_hr_prompts)
    assert p.hr_prompt == "a big cat <lora:Hyper-SDXL-4steps-lora:1>"
    assert p.hr_second_pass_steps == plan.preset.hires_steps == 4
    assert p.hr_sampler_name is None and p.hr_scheduler is None  # "use same sampler / scheduler"


def test_hires_left_alone_when_asked_but_warned():
    p = StandInP(enable_hr=True, hr_second_pass_steps=20, hr_sampler_name="Euler a")
    plan = plan_for(p, ON.replace(fix_hires=False))
    apply_plan(p, plan)
    assert (p.hr_second_pass_steps, p.hr_sampler_name) == (20, "Euler a")
    assert any("hires fix runs 20 steps" in w for w in plan.warnings)


def test_a_typed_tag_is_replaced_in_place_not_doubled():
    p = StandInP(prompt="a <lora:hyper-sdxl-4step:0.7> cat", batch=2)
    plan = plan_for(p)
    assert plan.lora_weight == 0.7  # the typed weight wins
    apply_plan(p, plan)
    assert p.all_prompts == ["a <lora:Hyper-SDXL-4steps-lora:0.7> cat #0", "a <lora:Hyper-SDXL-4steps-lora:0.7> cat #1"]


def test_a_typed_tag_configures_like_its_button():
    typed = StandInP(prompt="a cat <lora:Hyper-SDXL-8steps-CFG-lora:0.9>")
    from_tag = plan_for(typed, ON.replace(preset="hyper-1step", steps=1))  # the tag overrides the selection
    button = plan_for(StandInP(), ON.replace(preset="hyper-cfg-8step", weight=0.9))
    assert from_tag.ok and button.ok
    for field in ("sampler_name", "scheduler", "steps", "cfg_scale", "eta", "lora_name", "lora_weight", "infotext"):
        assert getattr(from_tag, field) == getattr(button, field), field
    assert from_tag.notes[0].startswith("from the prompt tag <lora:Hyper-SDXL-8steps-CFG-lora:0.9>")


def test_settings_from_prompt_tags_keeps_a_preset_that_uses_the_same_file():
    s = ON.replace(preset="hyper-unified-tcd", steps=6)
    got = settings_from_prompt_tags(s, ["x <lora:Hyper-SDXL-1step-lora:0.8:0.6>"])
    assert (got.settings.preset, got.settings.steps, got.settings.weight) == ("hyper-unified-tcd", 6, 0.6)
    assert any("UNet" in n for n in got.notes)
    assert settings_from_prompt_tags(HyperSettings(), ["<lora:Hyper-SDXL-1step-lora:1>"]).settings == HyperSettings()


def test_two_accelerators_in_the_prompt_are_refused():
    p = StandInP(prompt="<lora:Hyper-SDXL-4steps-lora:1> <lora:sdxl_lightning_4step_lora:1>")
    plan = plan_for(p)
    assert "several accelerator LoRAs" in plan.errors[0]
    with pytest.raises(HyperPlanError):
        apply_plan(p, plan)


def test_missing_lora_names_the_file_and_where_to_get_it_and_nothing_changes():
    p = StandInP()
    before = copy.deepcopy(vars(p))
    plan = plan_for(p, ON.replace(preset="lightning-4step"))
    assert not plan.ok
    assert "sdxl_lightning_4step_lora.safetensors" in plan.errors[0]
    assert "ByteDance/SDXL-Lightning" in plan.errors[0] and plan.errors[0].startswith("Hyper-SD: ")
    assert plan.status.startswith("Hyper-SD: not applied")
    with pytest.raises(HyperPlanError, match="sdxl_lightning_4step_lora"):
        apply_plan(p, plan)
    assert vars(p) == before


def test_renamed_peer_download_message():
    plan = plan_for(StandInP(width=512, height=512), ON.replace(preset="lcm-lora"), base="sd15")
    assert "latent-consistency/lcm-lora-sdv1-5 → pytorch_lora_weights.safetensors" in plan.errors[0]
    assert "saved as lcm-lora-sdv1-5.safetensors" in plan.errors[0]


def test_sdxl_lora_on_sd15_is_refused():
    typed = plan_for(StandInP(prompt="<lora:Hyper-SDXL-4steps-lora:1> cat"), base="sd15")
    assert "is a SDXL LoRA but the loaded model is SD1.5" in typed.errors[0]
    # A file named like the SD1.5 LoRA whose metadata says SDXL is refused too.
    wrong = loras(LoraInfo("Hyper-SD15-4steps-lora", metadata=XL))
    plan = plan_for(StandInP(), base="sd15", available=wrong)
    assert "is for SDXL but the loaded model is SD1.5" in plan.errors[0]
    assert "only for sdxl" in plan_for(StandInP(), ON.replace(preset="dmd2"), base="sd15").errors[0]


def test_unknown_model_type_is_refused():
    for base in (None, "flux", ""):
        plan = plan_for(StandInP(), base=base)
        assert "model's type" in plan.errors[0] and "unknown" in plan.errors[0]
    for base in ("SD3", "sd2", "SD2.1"):
        assert "for SD1.5 and SDXL models" in plan_for(StandInP(), ON.replace(preset="house-fast"), base=base).errors[0]


def test_sd15_model_picks_the_sd15_file_by_case_insensitive_name_alias_or_hash():
    assert plan_for(StandInP(width=512, height=512), base="SD1.5").lora_name == "Hyper-SD15-4steps-lora"
    by_alias = loras(LoraInfo("hsd4", alias="hyper-sd15-4steps-lora", metadata=SD1))
    assert plan_for(StandInP(), base="sd15", available=by_alias).lora_name == "hsd4"
    by_case = loras(LoraInfo("hyper-sd15-4steps-lora"))
    assert plan_for(StandInP(), base="sd15", available=by_case).lora_name == "hyper-sd15-4steps-lora"
    renamed = loras(LoraInfo("fast4", hash="c5dd05861646"))  # a prefix of the catalog's sha256 of the file
    current = CurrentValues(width=512, height=512)
    plan = make_plan(ON, "sd15", renamed, ["a cat"], current)
    assert plan.lora_name == "fast4"
    p = StandInP(prompt="a <lora:Hyper-SD15-4step:1>", batch=1)
    apply_plan(p, plan)
    assert p.all_prompts == ["a <lora:fast4:1> #0"]  # the typed official name is replaced by the real one


def test_find_lora_order_and_misses():
    infos = [LoraInfo("a", alias="Hyper-SDXL-4steps-lora"), LoraInfo("Hyper-SDXL-4steps-lora")]
    assert find_lora(infos, "Hyper-SDXL-4steps-lora.safetensors").name == "a"  # exact name or alias first
    assert find_lora([], "x") is None
    assert find_lora([LoraInfo("x", hash="abc")], "y", ["abcdef"]) is None  # too short to trust


def test_dpmpp_sde_karras_choice():
    p = StandInP()
    plan = plan_for(p, ON.replace(sampler="dpmpp_sde_karras"))
    apply_plan(p, plan)
    assert (p.sampler_name, p.scheduler, p.steps, p.cfg_scale, p.eta) == ("DPM++ SDE", "Karras", 4, 2.0, None)
    assert p.all_prompts[0].endswith("<lora:Hyper-SDXL-4steps-lora:0.8>")
    assert plan.warnings == ()  # CFG 2 is the recipe, not a warning


def test_cfg_above_two_with_a_non_cfg_lora_warns_but_not_with_a_cfg_lora():
    plan = plan_for(StandInP(), ON.replace(cfg=5.0))
    assert any("CFG 5" in w and "without guidance" in w for w in plan.warnings)
    assert plan.cfg_scale == 5.0
    cfg_plan = plan_for(StandInP(), ON.replace(preset="hyper-cfg-8step", cfg=6.0))
    assert cfg_plan.ok and not any("CFG" in w for w in cfg_plan.warnings)


def test_size_far_from_native_warns_with_a_fix_and_apply_size_sets_it():
    p = StandInP(width=512, height=768)
    plan = plan_for(p)
    assert plan.width is None and plan.size_fix == (832, 1280)
    assert any("832×1280" in w for w in plan.warnings)
    sized = plan_for(p, ON.replace(apply_size=True))
    apply_plan(p, sized)
    assert (p.width, p.height) == (832, 1280)
    assert plan_for(StandInP(width=832, height=1216)).size_fix is None  # an SDXL bucket: fine


def test_fit_size_by_hand():
    # area 1024² with aspect 2:3 → w = sqrt(1048576·2/3) = 836.1 → 832, h = sqrt(1048576·3/2) = 1254.1 → 1280
    assert fit_size(512, 768, (1024, 1024)) == (832, 1280)
    assert fit_size(1024, 1024, (512, 512)) == (512, 512)
    assert fit_size(4000, 10, (512, 512), multiple=64)[1] == 64


def test_img2img_low_denoising_warns():
    p = StandInP(denoising_strength=0.2, init_images=["img"])
    plan = plan_for(p)
    assert any("runs only the last step" in w for w in plan.warnings)
    assert any("img2img denoising 0.2" in w for w in plan.warnings)
    assert not any("last step" in w for w in plan_for(StandInP(denoising_strength=0.5, init_images=["i"])).warnings)


def test_house_model_preset_changes_no_prompt():
    p = StandInP(width=512, height=512)
    plan = plan_for(p, ON.replace(preset="house-fast"), base="sd15", available={})
    apply_plan(p, plan)
    assert (p.sampler_name, p.scheduler, p.steps, p.cfg_scale) == ("DPM++ 2M", "Align Your Steps", 12, 5.0)
    assert p.all_prompts == ["a cat #0", "a cat #1", "a cat #2"] and plan.lora_tag is None


def test_model_presets_warn_when_another_model_is_loaded():
    plan = plan_for(
        StandInP(width=512, height=512), ON.replace(preset="turbo"), model_name="sd_xl_base_1.0.safetensors"
    )
    assert any("sd_xl_turbo_1.0_fp16.safetensors" in w for w in plan.warnings)
    ok = plan_for(StandInP(width=512, height=512), ON.replace(preset="turbo"), model_name="sd_xl_turbo_1.0_fp16")
    assert ok.warnings == ()


def test_distilled_lora_takes_its_recipe_from_metadata():
    meta = {"hypersd_steps": "6", "hypersd_sampler": "TCD", "hypersd_gamma": "0.2", "hypersd_base": "sdxl"}
    available = loras(LoraInfo("house_tscd", alias="house", metadata=meta), LoraInfo("plain", metadata=XL))
    p = StandInP(prompt="a <lora:house:0.5> cat", batch=1)
    plan = plan_for(p, ON.replace(preset="distilled", lora="house_tscd"), available=available)
    assert (plan.steps, plan.eta, plan.lora_name, plan.sampler_name) == (6, 0.2, "house_tscd", "TCD")
    apply_plan(p, plan)
    assert p.all_prompts == ["a <lora:house_tscd:1> cat #0"]  # its alias tag was replaced, not doubled
    assert "hypersd_*" in plan_for(p, ON.replace(preset="distilled", lora="plain"), available=available).errors[0]
    unpicked = plan_for(StandInP(), ON.replace(preset="distilled"), available=available)
    assert unpicked.lora_name == "house_tscd" and "newest distilled LoRA, house_tscd" in " ".join(unpicked.notes)
    none_for_sd15 = plan_for(StandInP(), ON.replace(preset="distilled"), base="sd15", available=available)
    assert "no distilled LoRA for this model type" in none_for_sd15.errors[0]
    assert "not in your Lora folder" in plan_for(p, ON.replace(preset="distilled", lora="nope")).errors[0]
    wrong_base = plan_for(p, ON.replace(preset="distilled", lora="house_tscd"), base="sd15", available=available)
    assert "is for SDXL" in wrong_base.errors[0]


def test_the_newest_whole_run_is_the_default_distilled_lora():
    meta = {"hypersd_steps": "1", "hypersd_base": "sd15"}
    old = LoraInfo("house-v1", metadata=meta, mtime=100.0)
    new = LoraInfo("house-v2", metadata=meta, mtime=200.0)
    stage = LoraInfo("house-v2-2step", metadata={**meta, "hypersd_steps": "2"}, mtime=300.0)  # a stage file
    other_base = LoraInfo("xl-house", metadata={**meta, "hypersd_base": "sdxl"}, mtime=400.0)
    plain = LoraInfo("style", metadata={"ss_base_model_version": "sd_v1"}, mtime=500.0)
    assert newest_distilled_lora([old, new, stage, other_base, plain], "sd15") is new
    assert newest_distilled_lora([old, stage], "sd15") is old
    assert newest_distilled_lora([stage], "sd15") is stage  # only stage files: the newest of them
    assert newest_distilled_lora([plain, other_base], "sd15") is None
    assert newest_distilled_lora([old, other_base], "sdxl") is other_base


def test_infotext_round_trip_restores_the_same_plan():
    p = StandInP()
    plan = plan_for(p, ON.replace(sampler="euler_trailing", weight=0.75))
    restored = read_infotext(plan.extra_generation_params).settings
    assert restored == plan.settings
    again = plan_for(StandInP(), restored)
    assert (again.sampler_name, again.scheduler, again.steps, again.cfg_scale, again.lora_weight) == (
        "Euler", "Trailing", 4, 1.0, 0.75
    )  # fmt: skip
    assert again.infotext == plan.infotext


def test_every_preset_plans_cleanly_when_its_files_are_there():
    from hypersd.presets import PRESETS

    every = loras(*(LoraInfo(r.lora_stem, metadata=XL if r.base == "sdxl" else SD1) for r in PRESETS if r.lora_file))
    for row in PRESETS:
        if row.id == "distilled":
            continue
        base = "sdxl" if row.base == "any" else row.base
        w, h = row.size if row.size != (0, 0) else (1024, 1024)
        p = StandInP(width=w, height=h, batch=2)
        plan = plan_for(p, ON.replace(preset=row.id), base=base, available=every, model_name=row.model_file)
        assert plan.ok and plan.warnings == (), (row.id, row.base, plan.errors, plan.warnings)
        apply_plan(p, plan)
        assert all(len(loratags.find_lora_tags(x)) == (1 if row.lora_file else 0) for x in p.all_prompts)


def test_lora_info_from_the_lora_extensions_network_on_disk():
    import enum
    from types import SimpleNamespace

    SdVersion = enum.Enum("SdVersion", ["Unknown", "SD1", "SD2", "SDXL"])  # network.py v1.10.1
    xl = SimpleNamespace(
        name="Hyper-SDXL-4steps-lora",
        alias="Hyper-SDXL-4steps-lora",
        filename="/m/x.safetensors",
        metadata={"ss_base_model_version": "sdxl_base_v1-0"},
        hash="0123456789ab",
        sd_version=SdVersion.SDXL,
    )
    info = LoraInfo.from_network_on_disk(xl)
    assert (info.name, info.path, info.model_base, info.hash) == (
        "Hyper-SDXL-4steps-lora",
        "/m/x.safetensors",
        "sdxl",
        "0123456789ab",
    )
    # SD1 only means "has some metadata" there: without ss_base_model_version the base stays unknown.
    other = SimpleNamespace(name="n", alias="n", filename="", metadata={"x": "1"}, hash=None, sd_version=SdVersion.SD1)
    assert LoraInfo.from_network_on_disk(other).model_base is None
