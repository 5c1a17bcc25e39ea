"""The preset table: every row complete, every name one WebUI v1.10.1 (or we) really has."""

import dataclasses

import pytest

from hypersd import presets
from hypersd.lora_metadata import PresetMetadataError
from hypersd.presets import PRESETS, HyperPreset, preset_from_metadata

# Sampler names of WebUI v1.10.1, read from kklouzal/stable-diffusion-webui tag v1.10.1:
# modules/sd_samplers_kdiffusion.py (samplers_k_diffusion), modules/sd_samplers_timesteps.py
# (samplers_timesteps), modules/sd_samplers_lcm.py (samplers_lcm).  Ours: "TCD" (docs/COMMON.md).
WEBUI_V1_10_SAMPLERS = {
    "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE", "Euler a",
    "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart", "DDIM", "DDIM CFG++",
    "PLMS", "UniPC", "LCM",
}  # fmt: skip
OUR_SAMPLERS = {"TCD"}
# Schedule labels of WebUI v1.10.1 (modules/sd_schedulers.py, `schedulers`), and ours (COMMON.md).
WEBUI_V1_10_SCHEDULE_LABELS = {
    "Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform", "KL Optimal",
    "Align Your Steps", "Simple", "Normal", "DDIM", "Beta",
}  # fmt: skip
OUR_SCHEDULE_LABELS = {"Trailing", "TCD", "Hyper 1-step (t=800)"}

# Fixed by COMMON.md.
PRESET_IDS = [
    "hyper-1step", "hyper-2step", "hyper-4step", "hyper-8step", "hyper-cfg-8step", "hyper-cfg-12step",
    "hyper-unified-tcd", "hyper-sdxl-1step-unet", "lightning-2step", "lightning-4step", "lightning-8step", "lcm-lora",
    "tcd-lora", "turbo", "dmd2", "house-fast", "distilled",
]  # fmt: skip
PEER_FILES = {
    "lcm-lora-sdv1-5.safetensors", "lcm-lora-sdxl.safetensors", "TCD-SD15-LoRA.safetensors",
    "TCD-SDXL-LoRA.safetensors", "sdxl_lightning_2step_lora.safetensors", "sdxl_lightning_4step_lora.safetensors",
    "sdxl_lightning_8step_lora.safetensors", "dmd2_sdxl_4step_lora.safetensors",
}  # fmt: skip
# Official names on the hub (HYPER_SD.md's checkpoint table).
OFFICIAL_HYPER_FILES = {
    f"Hyper-{b}-{s}-lora.safetensors"
    for b in ("SD15", "SDXL")
    for s in ("1step", "2steps", "4steps", "8steps", "8steps-CFG", "12steps-CFG")
}


def test_the_preset_ids_are_exactly_the_fixed_ones_in_order():
    assert list(presets.PRESET_IDS) == PRESET_IDS


@pytest.mark.parametrize("row", PRESETS, ids=lambda r: f"{r.id}-{r.base}")
def test_every_row_is_complete_and_consistent(row: HyperPreset):
    for field in dataclasses.fields(HyperPreset):
        if field.name not in {"lora_file", "gamma", "catalog_id", "model_file", "note", "sampler_choices"}:
            assert getattr(row, field.name) is not None, field.name
    assert row.base in {"sd15", "sdxl", "any"}
    assert row.group and row.title and row.source
    assert row.sampler in WEBUI_V1_10_SAMPLERS | OUR_SAMPLERS
    assert row.scheduler in WEBUI_V1_10_SCHEDULE_LABELS | OUR_SCHEDULE_LABELS
    assert row.steps_range[0] <= row.steps <= row.steps_range[1]
    assert 1.0 <= row.cfg_range[0] <= row.cfg <= row.cfg_range[1]
    assert row.weight_range[0] <= row.weight <= row.weight_range[1]
    assert (row.gamma is not None) == (row.sampler == "TCD")
    if row.gamma is not None:
        assert 0.0 <= row.gamma <= 1.0
    assert row.hires_steps >= 1 and 0.0 < row.hires_denoise < 1.0
    if row.base == "any":
        assert row.size == (0, 0)
    else:
        assert all(side > 0 and side % 64 == 0 for side in row.size)
    if row.lora_file is not None:
        assert row.lora_file.endswith(".safetensors")
    if row.id != "distilled" and (row.lora_file or row.model_file):
        entry = row.catalog_entry  # the file's origin, size and hash: the catalog's
        assert entry.local_filename in (row.lora_file, row.model_file) and entry.base == row.base
    if not row.uses_cfg:
        assert row.cfg <= 2.0  # the plan warns above 2 for LoRAs distilled without guidance
    assert set(row.sampler_choices) <= set(presets.SAMPLER_CHOICE_IDS)


def test_each_id_has_one_row_per_base():
    seen = [(r.id, r.base) for r in PRESETS]
    assert len(seen) == len(set(seen))
    for preset_id in PRESET_IDS:
        bases = {r.base for r in PRESETS if r.id == preset_id}
        assert bases in ({"sd15", "sdxl"}, {"sdxl"}, {"any"}), preset_id


def test_local_file_names_are_the_fixed_ones():
    files = {r.lora_file for r in PRESETS if r.lora_file}
    assert files == OFFICIAL_HYPER_FILES | PEER_FILES
    models = {r.model_file for r in PRESETS if r.model_file}
    assert models == {"Hyper-SDXL-1step-Unet.safetensors", "sd_xl_turbo_1.0_fp16.safetensors"}


def test_a_lora_file_matches_its_base():
    for row in PRESETS:
        if row.lora_file:
            name = row.lora_file.lower()
            assert ("sdxl" in name) == (row.base == "sdxl"), row.lora_file


def test_native_sizes():
    assert presets.get_preset("hyper-4step", "sd15").size == (512, 512)
    assert presets.get_preset("hyper-4step", "sdxl").size == (1024, 1024)
    assert presets.get_preset("turbo", "sdxl").size == (512, 512)  # SDXL-Turbo is a 512² model
    assert presets.get_preset("house-fast", "sdxl").size == (1024, 1024)


def test_official_nstep_recipe_and_cfg_loras():
    row = presets.get_preset("hyper-4step", "sdxl")
    official = presets.preset_with_sampler(row, "euler_trailing")
    assert (official.sampler, official.scheduler, official.steps, official.cfg, official.weight) == (
        "Euler", "Trailing", 4, 1.0, 1.0
    )  # fmt: skip
    cfg_row = presets.get_preset("hyper-cfg-12step", "sd15")
    assert cfg_row.uses_cfg and cfg_row.steps == 12 and 5.0 <= cfg_row.cfg <= 8.0
    assert cfg_row.lora_file == "Hyper-SD15-12steps-CFG-lora.safetensors"


def test_sampler_choices_follow_the_seed_notes_and_community_practice():
    xl, sd15 = presets.get_preset("hyper-4step", "sdxl"), presets.get_preset("hyper-4step", "sd15")
    sde = presets.preset_with_sampler(xl, "dpmpp_sde_karras")
    assert (sde.sampler, sde.scheduler, sde.cfg, sde.weight, sde.gamma) == ("DPM++ SDE", "Karras", 2.0, 0.8, None)
    assert presets.preset_with_sampler(sd15, "dpmpp_sde_karras").weight == 1.0
    tcd = presets.preset_with_sampler(xl, "tcd")
    assert (tcd.sampler, tcd.scheduler, tcd.gamma) == ("TCD", "TCD", 0.3)
    assert presets.DEFAULT_SAMPLER_CHOICE == "tcd"


def test_fixed_rows_ignore_the_sampler_choice():
    row = presets.get_preset("lightning-4step", "sdxl")
    assert presets.preset_with_sampler(row, "dpmpp_sde_karras") == row
    with pytest.raises(KeyError, match="Hyper-SD: unknown sampler choice"):
        presets.preset_with_sampler(row, "heun")


def test_get_preset_errors_name_the_problem():
    with pytest.raises(KeyError, match="unknown preset"):
        presets.get_preset("hyper-3step", "sdxl")
    with pytest.raises(KeyError, match="only for sdxl"):
        presets.get_preset("lightning-4step", "sd15")


def test_lcm_uses_the_tcd_schedule_because_the_grids_are_equal():
    diffusers = pytest.importorskip("diffusers")
    kw = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
    for n in (2, 4, 8):
        lcm, tcd = diffusers.LCMScheduler(**kw), diffusers.TCDScheduler(**kw)
        lcm.set_timesteps(n)
        tcd.set_timesteps(n)
        assert lcm.timesteps.tolist() == tcd.timesteps.tolist()
    assert presets.get_preset("lcm-lora", "sdxl").scheduler == "TCD"


def test_titles_do_not_depend_on_the_base():
    for preset_id, title in presets.preset_titles().items():
        assert {r.title for r in PRESETS if r.id == preset_id} == {title}


def test_groups_cover_every_preset_once():
    groups = presets.presets_by_group()
    listed = [pid for ids in groups.values() for pid in ids]
    assert sorted(listed) == sorted(PRESET_IDS)
    assert groups[presets.GROUP_NSTEP] == ["hyper-1step", "hyper-2step", "hyper-4step", "hyper-8step"]


# ------------------------------------------------------------------------------------ metadata contract


def test_no_hypersd_metadata_is_not_ours():
    assert preset_from_metadata({}) is None
    assert preset_from_metadata({"ss_base_model_version": "sdxl_base_v1-0", "ss_network_dim": "64"}) is None


def test_full_metadata_gives_the_recipe():
    meta = {
        "hypersd_steps": "6",
        "hypersd_sampler": "euler",
        "hypersd_scheduler": "trailing",
        "hypersd_cfg": "1.5",
        "hypersd_base": "sd15",
        "hypersd_weight": "0.9",
    }
    row = preset_from_metadata(meta, "house_tscd")
    assert (row.id, row.base, row.lora_file, row.sampler, row.scheduler) == (
        "distilled", "sd15", "house_tscd", "Euler", "Trailing"
    )  # fmt: skip
    assert (row.steps, row.cfg, row.weight, row.gamma, row.size) == (6, 1.5, 0.9, None, (512, 512))


def test_metadata_defaults_and_base_fallback():
    row = preset_from_metadata(
        {"hypersd_steps": "4", "hypersd_gamma": "0.5", "ss_base_model_version": "sdxl_base_v1-0"}
    )
    assert (row.base, row.sampler, row.scheduler, row.gamma, row.cfg, row.weight) == (
        "sdxl",
        "TCD",
        "TCD",
        0.5,
        1.0,
        1.0,
    )
    assert preset_from_metadata({"hypersd_steps": "4", "ss_base_model_version": "sd_v1"}).base == "sd15"
    assert preset_from_metadata({"hypersd_steps": "4"}).base == "any"


@pytest.mark.parametrize(
    "meta, message",
    [
        ({"hypersd_sampler": "TCD"}, "no hypersd_steps"),
        ({"hypersd_steps": "four"}, "not a number"),
        ({"hypersd_steps": "4.5"}, "whole number"),
        ({"hypersd_steps": "0"}, "outside"),
        ({"hypersd_steps": "4", "hypersd_gamma": "1.5"}, "outside"),
        ({"hypersd_steps": "4", "hypersd_sampler": "Warp"}, "not a known sampler"),
        ({"hypersd_steps": "4", "hypersd_scheduler": "zigzag"}, "not a known schedule"),
        ({"hypersd_steps": "4", "hypersd_base": "sd9"}, "hypersd_base"),
        ({"hypersd_steps": "4", "hypersd_cfg": "nan"}, "outside"),
    ],
)
def test_malformed_metadata_is_an_error(meta, message):
    with pytest.raises(PresetMetadataError, match=message):
        preset_from_metadata(meta)
