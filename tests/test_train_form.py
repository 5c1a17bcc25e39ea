"""The Train tab's form → engine settings, and the install-time dependency plan."""

import pytest

from hypersd import deps
from hypersd.distill.config import build_config
from hypersd.train.form import FormError, settings_from_form, valid_output_name


def test_blank_fields_keep_the_preset():
    assert settings_from_form() == {}
    assert build_config("quick", None, model="m", **settings_from_form()).steps_per_stage == 100


def test_filled_fields_override_the_preset_and_the_engine_accepts_them():
    settings = settings_from_form(
        stages="4, 2,1", steps_per_stage="50", rank="8", learning_rate="2e-4", batch_size="3", cfg_min="4",
        cfg_max="8", resolution="768", buckets="On", precision="bf16", gradient_checkpointing=True,
        sample_prompts="a cat\n\n a dog ",
    )  # fmt: skip
    assert settings == {
        "stages": ["4", "2", "1"], "steps_per_stage": 50, "rank": 8, "learning_rate": 2e-4, "batch_size": 3,
        "omega_min": 4.0, "omega_max": 8.0, "resolution": 768, "buckets": True, "mixed_precision": "bf16",
        "gradient_checkpointing": True, "sample_prompts": ["a cat", "a dog"],
    }  # fmt: skip
    cfg = build_config("standard", None, model="m", **settings)
    assert cfg.stages == ("4", "2", "1") and cfg.rank == 8 and cfg.sample_prompts == ("a cat", "a dog")


def test_every_bad_field_is_named_at_once():
    with pytest.raises(FormError) as err:
        settings_from_form(stages="1,2", rank="1.5", learning_rate="0", resolution="500", cfg_min="9", cfg_max="3",
                           batch_size="x", buckets="maybe")  # fmt: skip
    text = str(err.value)
    for words in ("Stages", "LoRA rank: expected a whole number", "Learning rate: must be above 0",
                  "Resolution: must be a multiple of 64", "CFG range: from 9 is above to 3", "Batch size",
                  "Aspect buckets"):  # fmt: skip
        assert words in text, words


def test_the_later_stages_are_ticked_on_and_need_a_reward_model_for_feedback():
    assert settings_from_form(unified=True) == {"stages": ["8", "4", "2", "1", "dmd"]}
    assert settings_from_form(stages="4,1", unified=True, feedback=True, reward=" clip:/m ") == {
        "stages": ["4", "1", "dmd", "feedback"],
        "reward": "clip:/m",
    }
    with pytest.raises(FormError, match="Reward model: human feedback needs one"):
        settings_from_form(feedback=True)
    cfg = build_config("quick", None, model="m", **settings_from_form(unified=True, feedback=True, reward="demo:/c"))
    assert cfg.stages[-2:] == ("dmd", "feedback") and cfg.reward == "demo:/c"


@pytest.mark.parametrize("name", ["", " ", "a/b", "..x", "x.safetensors", "c:x", "what?"])
def test_bad_output_names(name):
    assert valid_output_name(name)


def test_good_output_name():
    assert valid_output_name("house-hyper_v2") is None


def test_install_plan_adds_only_what_is_missing_and_pins_everything_installed():
    assert deps.missing_requirements({"diffusers": True, "peft": True, "accelerate": True}) == []
    assert deps.missing_requirements({"diffusers": False, "peft": True, "accelerate": True}) == [
        "diffusers>=0.31,<0.37"
    ]
    lines = deps.constraint_lines({"Pillow": "9.5.0", "huggingface_hub": "0.36.2", "torch": "2.1.2+cu121", "x": ""})
    assert lines == ["huggingface-hub==0.36.2", "pillow==9.5.0", "torch==2.1.2+cu121"]
    assert deps.pip_command(["peft>=0.13,<0.14"], "/tmp/c.txt") == 'install "peft>=0.13,<0.14" -c "/tmp/c.txt"'
    installed = deps.installed_distributions()
    assert installed["pytest"]  # this interpreter's own packages are seen


def test_install_plan_stays_inside_webui_110_pins():
    """WebUI 1.10 pins transformers 4.30.2 and accelerate 0.21.0: the ranges must not ask for more than that."""
    from packaging.requirements import Requirement

    peft = Requirement(deps.TRAIN_REQUIREMENTS["peft"])
    assert "0.13.2" in peft.specifier and "0.14.0" not in peft.specifier  # 0.14 imports transformers.Cache (4.36+)
    diffusers = Requirement(deps.TRAIN_REQUIREMENTS["diffusers"])
    assert "0.36.0" in diffusers.specifier and "0.37.0" not in diffusers.specifier  # 0.37 models need transformers>4.30
    assert "0.21.0" in Requirement(deps.TRAIN_REQUIREMENTS["accelerate"]).specifier
