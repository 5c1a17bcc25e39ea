"""What the training writes is what the preset reads: the distill engine's metadata makes a distilled preset."""

import pytest

from hypersd import presets
from hypersd.lora_metadata import lora_metadata, with_measured


@pytest.mark.parametrize("base, steps, gamma", [("sd15", 4, 0.3), ("sdxl", 1, 1.0)])
def test_distill_export_metadata_makes_a_distilled_preset(base, steps, gamma):
    meta = lora_metadata(
        base=base, output_name="house", rank=8, alpha=8, stages=[8, 4, 2, 1], steps_trained=100,
        recommended_steps=steps, gamma=gamma,
    )  # fmt: skip
    row = presets.preset_from_metadata(meta, lora_file="house.safetensors")
    assert row is not None
    assert (row.id, row.base, row.steps, row.sampler, row.cfg) == ("distilled", base, steps, "TCD", 1.0)
    assert row.gamma == gamma
    assert row.scheduler == "Trailing"


def test_the_quality_reports_measured_recipe_is_what_the_preset_reads():
    meta = lora_metadata(
        base="sdxl", output_name="house", rank=8, alpha=8, stages=[4], steps_trained=10, recommended_steps=4,
        gamma=0.3, kind="tscd",
    )  # fmt: skip
    measured = with_measured(meta, {"steps": 2, "sampler": "Euler", "scheduler": "trailing", "cfg": 1.5, "gamma": None})
    assert measured["hypersd_measured"] == "1" and measured["hypersd_kind"] == "tscd"
    row = presets.preset_from_metadata(measured, lora_file="house.safetensors")
    assert (row.steps, row.sampler, row.scheduler, row.cfg, row.gamma) == (2, "Euler", "Trailing", 1.5, None)
    assert "hypersd_measured" not in meta  # the original is left as it was
