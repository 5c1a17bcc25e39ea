"""Hyper-FLUX.1-dev: catalog entries, presets, and the refusals of a preset on a model of the other family."""

import pathlib
import re
from types import SimpleNamespace

import pytest

from hypersd import catalog, plan_outcomes, presets
from hypersd.catalog import FLUX_BASE, FLUX_CATALOG, get_entry
from hypersd.loras import LoraInfo
from hypersd.plan import CurrentValues, make_plan
from hypersd.plan_apply import apply_plan
from hypersd.settings import HyperSettings

FACTS = pathlib.Path("/work/shared/docs/CATALOG_FACTS.md")
ON = HyperSettings(enabled=True)
FLUX_LORAS = {
    n: LoraInfo(n) for n in ("Hyper-FLUX.1-dev-8steps-lora", "Hyper-FLUX.1-dev-16steps-lora", "Hyper-SD15-4steps-lora")
}


def plan(preset_id, base, available=FLUX_LORAS, **current):
    settings = ON.with_preset(preset_id)
    return make_plan(settings, base, available, ["a cat"], CurrentValues(**current))


def test_the_flux_files_are_in_their_own_table_with_the_facts_values():
    assert [e.filename for e in FLUX_CATALOG] == [
        "Hyper-FLUX.1-dev-8steps-lora.safetensors",
        "Hyper-FLUX.1-dev-16steps-lora.safetensors",
    ]
    assert not set(FLUX_CATALOG) & set(catalog.CATALOG)  # A1111's Models tab and downloads keep to CATALOG
    for entry in FLUX_CATALOG:
        assert entry.base == FLUX_BASE and entry.kind == "lora" and entry.repo == "ByteDance/Hyper-SD"
        assert entry.size == 1_388_026_440 and not entry.size_exact  # a family size: never used to reject
        assert entry.verified == "B" and not entry.hash_is_confirmed  # MIR only, name inferred
        assert get_entry(entry.id) is entry


@pytest.mark.skipif(not FACTS.is_file(), reason="the shared facts document is not on this machine")
def test_the_flux_values_are_copied_from_the_facts_table():
    rows = [line for line in FACTS.read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    for entry in FLUX_CATALOG:
        row = next(r for r in rows if r.startswith(f"| {entry.repo} | {entry.filename} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[3].startswith(f"{entry.size:,}") and "family" in cells[3]
        assert f"`{entry.sha256}`" in cells[4] and re.search(r"\*\*\(B\)", cells[4])


@pytest.mark.parametrize("n", [8, 16])
def test_the_flux_presets_follow_the_model_card(n):
    row = presets.get_preset(f"hyper-flux-{n}step", FLUX_BASE)
    assert isinstance(row, presets.FluxPreset)
    assert (row.weight, row.guidance, row.steps, row.cfg) == (0.125, 3.5, n, 1.0)
    assert (row.sampler, row.scheduler, row.size) == ("Euler", "Simple", (1024, 1024))
    assert row.catalog_entry.filename == f"Hyper-FLUX.1-dev-{n}steps-lora.safetensors"
    assert row.lora_file == row.catalog_entry.local_filename
    assert "official model card" in row.source and "0.125" in row.source and "3.5" in row.source


def test_the_sd_presets_and_their_groups_are_unchanged():
    assert len(presets.PRESETS) == 26 and presets.preset_ids_for() == presets.PRESET_IDS
    assert (*presets.PRESET_IDS, "hyper-flux-8step", "hyper-flux-16step") == presets.ALL_PRESET_IDS
    assert presets.GROUP_FLUX not in presets.presets_by_group()  # A1111's accordion
    forge_groups = presets.presets_by_group((*catalog.BASES, FLUX_BASE))
    assert forge_groups[presets.GROUP_FLUX] == ["hyper-flux-8step", "hyper-flux-16step"]


def test_a_flux_preset_on_flux_sets_the_distilled_guidance_and_the_lora():
    result = plan("hyper-flux-8step", "FLUX.1-dev", width=1024, height=1024)
    assert result.ok, result.errors
    assert (result.sampler_name, result.scheduler, result.steps, result.cfg_scale) == ("Euler", "Simple", 8, 1.0)
    assert result.distilled_cfg_scale == 3.5 and result.eta is None
    assert result.lora_tag == "<lora:Hyper-FLUX.1-dev-8steps-lora:0.125>"
    assert "distilled guidance 3.5" in result.status
    p = SimpleNamespace(
        prompt="a cat", all_prompts=["a cat"], sampler_name="DPM++ 2M", scheduler="Automatic", steps=20,
        cfg_scale=7.0, eta=None, distilled_cfg_scale=3.0, width=1024, height=1024, extra_generation_params={},
    )  # fmt: skip
    apply_plan(p, result)
    assert p.distilled_cfg_scale == 3.5 and p.all_prompts == ["a cat <lora:Hyper-FLUX.1-dev-8steps-lora:0.125>"]


def test_an_sd_plan_leaves_the_distilled_guidance_alone():
    result = plan("hyper-4step", "sd15")
    assert result.ok and result.distilled_cfg_scale is None
    p = SimpleNamespace(prompt="x", all_prompts=["x"], extra_generation_params={}, distilled_cfg_scale=3.0)
    apply_plan(p, result)
    assert p.distilled_cfg_scale == 3.0


@pytest.mark.parametrize("base", ["sd15", "sdxl"])
def test_a_flux_preset_on_an_sd_model_is_refused_with_what_to_do(base):
    result = plan("hyper-flux-16step", base)
    (refusal,) = result.refusals
    assert isinstance(refusal, plan_outcomes.PresetForOtherModelFamily)
    assert "is for FLUX.1-dev models" in result.errors[0] and "AUTOMATIC1111 WebUI cannot run Flux" in result.errors[0]
    assert result.sampler_name is None and result.lora_name is None


@pytest.mark.parametrize(
    "preset_id", ["hyper-4step", "lightning-4step", "hyper-unified-tcd", "house-fast", "distilled"]
)
def test_an_sd_preset_on_a_flux_model_is_refused_with_what_to_do(preset_id):
    result = plan(preset_id, "flux-dev")
    assert [type(r) for r in result.refusals] == [plan_outcomes.PresetForOtherModelFamily]
    assert "is for SD1.5/SDXL models" in result.errors[0] and "pick a Hyper-FLUX preset" in result.errors[0]


def test_flux_alone_is_not_taken_for_flux_dev():
    """ "flux" does not say dev or schnell; the Hyper-FLUX LoRAs are for dev only."""
    assert isinstance(plan("hyper-flux-8step", "flux").refusals[0], plan_outcomes.UnknownModelType)


def test_a_flux_lora_named_by_forge_is_refused_on_an_sd_model():
    net = SimpleNamespace(
        name="my-flux-lora", alias="", filename="", metadata={}, hash="", sd_version=SimpleNamespace(name="Flux")
    )
    info = LoraInfo.from_network_on_disk(net)
    assert info.model_base == FLUX_BASE
    settings = ON.replace(preset="hyper-flux-8step")
    result = make_plan(
        settings,
        "flux-dev",
        {"Hyper-FLUX.1-dev-8steps-lora": info.__class__("Hyper-FLUX.1-dev-8steps-lora", base="sdxl")},
        ["x"],
        CurrentValues(),
    )
    assert any(isinstance(r, plan_outcomes.LoraForOtherModel) for r in result.refusals)


def test_the_api_accepts_the_flux_ids():
    assert HyperSettings.from_api([True, "hyper-flux-16step"]).preset == "hyper-flux-16step"
