"""Contracts between core modules written separately: presets ↔ catalog, distill export ↔ distilled preset."""

import pytest

from hypersd import catalog, presets


def lora_rows():
    return [row for row in presets.PRESETS if row.lora_file]


def test_every_preset_lora_is_in_the_catalog_with_the_same_origin():
    assert lora_rows(), "the preset table lost its LoRA rows"
    for row in lora_rows():
        if row.id == "distilled":
            continue
        entry = catalog.entry_for_local_file(row.lora_file)
        assert entry is not None, f"{row.id}/{row.base}: {row.lora_file} has no catalog entry"
        assert entry.base == row.base, f"{row.lora_file}: preset says {row.base}, catalog {entry.base}"
        assert row.id in entry.presets, f"catalog entry {entry.id} does not list preset {row.id}"
        if row.hub_repo:
            assert (entry.repo, entry.filename) == (row.hub_repo, row.hub_file)


def test_every_catalog_preset_id_exists():
    for entry in catalog.CATALOG:
        for preset_id in entry.presets:
            assert preset_id in presets.PRESET_IDS, f"{entry.id} serves unknown preset {preset_id}"


@pytest.mark.parametrize("base, steps, gamma", [("sd15", 4, 0.3), ("sdxl", 1, 1.0)])
def test_distill_export_metadata_makes_a_distilled_preset(base, steps, gamma):
    pytest.importorskip("diffusers")
    from hypersd.distill.export import lora_metadata

    meta = lora_metadata(
        base=base, output_name="house", rank=8, alpha=8, stages=[8, 4, 2, 1], steps_trained=100,
        recommended_steps=steps, gamma=gamma,
    )  # fmt: skip
    row = presets.preset_from_metadata(meta, lora_file="house.safetensors")
    assert row is not None
    assert (row.id, row.base, row.steps, row.sampler, row.cfg) == ("distilled", base, steps, "TCD", 1.0)
    assert row.gamma == gamma
    assert row.scheduler == "Trailing"
