"""Prompt tag parsing (WebUI v1.10.1's extra-network syntax) and adding a tag without duplicates."""

import pytest

from hypersd import loratags
from hypersd.loratags import add_lora_tag, find_hyper_tags, find_lora_tags, known_lora, remove_lora_tags
from hypersd.presets import PRESETS


def test_weights_follow_the_lora_extension():
    # extra_networks_lora.py: te = 2nd positional (default 1), unet = 3rd (default te); te=/unet= override.
    cases = {
        "<lora:x>": (1.0, 1.0),
        "<lora:x:0.8>": (0.8, 0.8),
        "<lora:x:0.8:0.5>": (0.8, 0.5),
        "<lora:x:te=0.3>": (0.3, 0.3),
        "<lora:x:1:unet=0.25>": (1.0, 0.25),
        "<lora:x:0.5:0.7:32>": (0.5, 0.7),  # 4th positional is dyn_dim
        "<lora:x:abc>": (None, None),
    }
    for text, (te, unet) in cases.items():
        (tag,) = find_lora_tags(text)
        assert (tag.name, tag.te_weight, tag.unet_weight) == ("x", te, unet), text


def test_several_tags_positions_and_networks():
    prompt = "a <lora:Hyper-SDXL-4steps-lora:1> cat, <hypernet:h:1> <lyco:style:0.5>, <lora:other:0.3>"
    tags = find_lora_tags(prompt)
    assert [(t.network, t.name) for t in tags] == [
        ("lora", "Hyper-SDXL-4steps-lora"),
        ("lyco", "style"),
        ("lora", "other"),
    ]
    assert all(prompt[t.start : t.end] == t.text for t in tags)
    (hyper,) = find_hyper_tags(prompt)
    assert hyper.known.file == "Hyper-SDXL-4steps-lora.safetensors"


def test_tags_inside_prompt_editing_and_alternation():
    prompt = "[a cat:<lora:hyper-sdxl-4steps:0.7> a dog:0.5], [red|<lora:Hyper-SDXL-4step:1>]"
    tags = find_hyper_tags(prompt)
    assert [(t.name, t.weight) for t in tags] == [("hyper-sdxl-4steps", 0.7), ("Hyper-SDXL-4step", 1.0)]
    # Both mean the same file: adding the canonical tag leaves exactly one, in place of the first.
    out = add_lora_tag(prompt, "Hyper-SDXL-4steps-lora", 0.7)
    assert out == "[a cat:<lora:Hyper-SDXL-4steps-lora:0.7> a dog:0.5], [red|]"


@pytest.mark.parametrize(
    "name, file",
    [
        ("Hyper-SDXL-4step", "Hyper-SDXL-4steps-lora.safetensors"),
        ("Hyper-SDXL-4steps-lora", "Hyper-SDXL-4steps-lora.safetensors"),
        ("hyper-sdxl-4steps", "Hyper-SDXL-4steps-lora.safetensors"),
        ("HYPER_SDXL_4STEPS_LORA.safetensors", "Hyper-SDXL-4steps-lora.safetensors"),
        ("sdxl_hyper_sd_4step_lora", "Hyper-SDXL-4steps-lora.safetensors"),
        ("Hyper-SD15-8steps-CFG-lora", "Hyper-SD15-8steps-CFG-lora.safetensors"),
        ("Hyper-SD15-8step-cfg", "Hyper-SD15-8steps-CFG-lora.safetensors"),
        ("Hyper-SD15-8steps-lora", "Hyper-SD15-8steps-lora.safetensors"),
        ("Hyper-SD15-1step-lora", "Hyper-SD15-1step-lora.safetensors"),
        ("sdxl_lightning_4step_lora", "sdxl_lightning_4step_lora.safetensors"),
        ("lcm-lora-sdv1-5", "lcm-lora-sdv1-5.safetensors"),
        ("lcm_lora_sdxl", "lcm-lora-sdxl.safetensors"),
        ("TCD-SDXL-LoRA", "TCD-SDXL-LoRA.safetensors"),
        ("dmd2_sdxl_4step_lora_fp16", "dmd2_sdxl_4step_lora.safetensors"),
    ],
)
def test_names_and_aliases_map_to_files(name, file):
    assert known_lora(name).file == file


@pytest.mark.parametrize("name", ["my_style", "Hyper-SDXL-3steps-lora", "hyper", "lora", "pytorch_lora_weights"])
def test_other_names_are_not_accelerators(name):
    assert known_lora(name) is None


def test_every_table_file_is_found_under_its_own_name_with_its_presets():
    for row in PRESETS:
        if row.lora_file:
            known = known_lora(row.lora_stem)
            assert known.file == row.lora_file and row.id in known.preset_ids and known.base == row.base
    assert known_lora("Hyper-SDXL-1step-lora").preset_ids == ("hyper-1step", "hyper-unified-tcd")


def test_add_appends_once_and_is_idempotent():
    once = add_lora_tag("a cat", "Hyper-SDXL-4steps-lora", 1.0)
    assert once == "a cat <lora:Hyper-SDXL-4steps-lora:1>"
    assert add_lora_tag(once, "Hyper-SDXL-4steps-lora", 1.0) == once
    assert add_lora_tag("", "x", 0.5) == "<lora:x:0.5>"
    assert add_lora_tag("a cat\n", "x", 0.5) == "a cat\n<lora:x:0.5>"


def test_add_replaces_an_equivalent_tag_and_keeps_other_loras():
    prompt = "<lora:style:0.6> a cat, <lora:hyper-sdxl-4step:0.8>, <lora:Hyper-SDXL-4steps-lora:1> night"
    out = add_lora_tag(prompt, "Hyper-SDXL-4steps-lora", 0.8)
    assert out == "<lora:style:0.6> a cat, <lora:Hyper-SDXL-4steps-lora:0.8>,  night"
    assert len(find_hyper_tags(out)) == 1


def test_add_uses_given_aliases_for_unknown_loras():
    # A distilled LoRA: its file name and its ss_output_name alias are the same LoRA.
    prompt = "a <lora:house_v1:0.5> cat"
    assert add_lora_tag(prompt, "house-tscd-v1", 1.0, aliases=["house_v1"]) == "a <lora:house-tscd-v1:1> cat"
    # Loose matching is only for known files: "house-tscd_v1" may be another file.
    assert add_lora_tag("<lora:house-tscd_v1:1>", "house-tscd-v1", 1.0).count("<lora:") == 2


def test_remove():
    prompt = "a <lora:Hyper-SDXL-4step:1> b <lora:keep:1> <lyco:hyper-sdxl-4steps-lora:0.5>"
    assert remove_lora_tags(prompt, ["Hyper-SDXL-4steps-lora"]) == "a  b <lora:keep:1> "


def test_name_key_normalisation():
    assert loratags.name_key("Hyper-SDXL-4steps-lora.safetensors") == "hypersdxl4step"
    assert loratags.name_key("Hyper-SD15-12steps-CFG-lora") == "hypersd1512stepcfg"
    assert loratags.lora_tag("x", 0.80) == "<lora:x:0.8>"
