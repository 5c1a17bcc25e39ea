"""How a plan looks LoRAs up: once per job, a fresh listing and recognition by hash only when needed."""

from hypersd import plan_outcomes as out
from hypersd.catalog import get_entry
from hypersd.loras import LoraInfo, LoraLookup
from hypersd.plan import CurrentValues, make_plan
from hypersd.settings import HyperSettings
from hypersd.train.layout import is_stage_lora_name, stage_lora

ON = HyperSettings(enabled=True, preset="hyper-4step")
SD15_4 = get_entry("hyper-sd15-4steps-lora")


class Calls:
    def __init__(self, result):
        self.result, self.count = result, 0

    def __call__(self, *args):
        self.count += 1
        return self.result


def plan(lookup):
    return make_plan(ON, "sd15", lookup, ["a cat"], CurrentValues(width=512, height=512))


def test_a_listed_lora_needs_neither_a_fresh_listing_nor_hashing():
    refresh, recognise = Calls([]), Calls(None)
    lookup = LoraLookup([LoraInfo("Hyper-SD15-4steps-lora")], refresh=refresh, recognise=recognise)
    assert plan(lookup).lora_name == "Hyper-SD15-4steps-lora"
    assert (refresh.count, recognise.count) == (0, 0)


def test_a_file_copied_in_since_the_listing_is_found_in_the_fresh_one():
    refresh, recognise = Calls([LoraInfo("Hyper-SD15-4steps-lora")]), Calls(None)
    result = plan(LoraLookup([], refresh=refresh, recognise=recognise))
    assert result.ok and result.lora_name == "Hyper-SD15-4steps-lora"
    assert (refresh.count, recognise.count) == (1, 0)


def test_a_renamed_copy_is_recognised_by_its_catalog_hash_once():
    renamed = LoraInfo("my-fast-lora", path="/loras/sub/my-fast-lora.safetensors")
    recognise = Calls("/loras/sub/my-fast-lora.safetensors")
    lookup = LoraLookup([renamed], refresh=Calls([renamed]), recognise=recognise)
    first = plan(lookup)
    assert first.ok and first.lora_name == "my-fast-lora"
    assert lookup.find("Hyper-SD15-4steps-lora.safetensors", SD15_4).sha256 == SD15_4.sha256
    assert recognise.count == 1  # asked once for the entry, however often the lookup is asked


def test_a_missing_lora_is_a_typed_refusal_that_carries_its_catalog_entry():
    result = plan(LoraLookup([LoraInfo("style")], refresh=Calls([]), recognise=Calls(None)))
    (refusal,) = result.refusals
    assert isinstance(refusal, out.MissingLora)
    assert refusal.entry is SD15_4 and refusal.base == "sd15" and refusal.preset.id == "hyper-4step"
    assert result.errors == (out.render(refusal),)
    assert f"{SD15_4.repo} → {SD15_4.filename}" in result.errors[0]
    assert result.status.startswith("Hyper-SD: not applied: the preset 'Hyper-SD 4-step' (SD1.5) needs the LoRA")


def test_every_outcome_type_has_a_message():
    for kind in (*out.Refusal.__subclasses__(), *out.Caution.__subclasses__()):
        assert kind in out._RENDER, kind.__name__


def test_stage_file_names_are_recognised_from_the_layouts_own_names(tmp_path):
    for stage in (8, 1, "dmd", "feedback"):
        assert is_stage_lora_name(stage_lora(tmp_path, "house", stage).stem), stage
    for name in ("house", "step", "house-step", "house-xstep", "Hyper-SDXL-4steps-lora", "-8step"):
        assert not is_stage_lora_name(name), name
