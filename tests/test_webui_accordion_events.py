"""The accordion's paste and buttons as plain functions, and what WebUI's API makes of a pasted infotext."""

import pytest
from webui_standin import api_script_args

from hypersd.infotext import INFOTEXT_KEY, format_infotext
from hypersd.settings import FIELDS, HyperSettings, HyperSettingsError, from_api
from hypersd.webui import accordion_events as events


def test_a_readable_entry_restores_every_field():
    settings = HyperSettings(True, "hyper-8step", "euler_trailing", 6, 1.5, None, 0.75, True, "", False)
    params = {"Steps": "6", **format_infotext(settings)}
    assert from_api(api_script_args(params)) == settings


def test_no_entry_turns_the_accordion_off_and_clears_an_old_problem():
    assert events.pasted_values({"Steps": "20"}) == {"enabled": False, "restore_error": ""}
    assert from_api(api_script_args({"Steps": "20"})) == HyperSettings()


@pytest.mark.parametrize("value", ["v999 preset=hyper-4step", "v1 " + "x" * 5000, 'v1 preset="hyper-4step"'])
def test_an_unreadable_entry_reaches_process_as_a_refusal(value):
    pasted = events.pasted_values({INFOTEXT_KEY: value})
    assert set(pasted) == {"enabled", "restore_error"} and pasted["enabled"] is True
    settings = from_api(api_script_args({INFOTEXT_KEY: value}))
    assert settings.enabled and settings.restore_error == pasted["restore_error"]
    assert settings.restore_error.startswith("Hyper-SD: the infotext's Hyper-SD entry cannot be restored: ")
    # the request's own args win: [false] turns Hyper-SD off (process then changes nothing); a dict replaces it all
    assert not from_api(api_script_args({INFOTEXT_KEY: value}, [False])).enabled
    assert from_api([{"enabled": True}, *api_script_args({INFOTEXT_KEY: value})[1:]]).restore_error == ""


def test_a_preset_button_clears_the_problem_and_cleans_the_prompt():
    settings, values, prompt = events.preset_values("hyper-2step", "a cat <lora:Hyper-SD15-4steps-lora:1>, blue")
    assert settings == HyperSettings(enabled=True, preset="hyper-2step")
    assert dict(zip(events.PRESET_OUTPUTS, values, strict=True)) == {
        "enabled": True, "preset": "hyper-2step", "steps": 0, "cfg": 0, "gamma": -1, "weight": -1, "restore_error": ""
    }  # fmt: skip
    assert "<lora:" not in prompt and "a cat" in prompt
    assert events.preset_values("turbo")[2] is None  # img2img without a prompt box
    assert set(events.PRESET_OUTPUTS) <= {f.name for f in FIELDS}


@pytest.mark.parametrize(
    "prompt, words",
    [(["a cat"], "the prompt must be text, got list"), ("x" * (events.MAX_PROMPT + 1), "characters long, at most")],
)
def test_a_preset_button_refuses_a_prompt_that_is_not_one(prompt, words):
    with pytest.raises(HyperSettingsError, match=words):
        events.preset_values("hyper-2step", prompt)


def test_native_size_keeps_the_aspect_and_refuses_non_sizes():
    assert events.native_size("sdxl", 512, 512) == [1024, 1024]
    assert events.native_size(None, 1024, 512) == [704, 384]
    for bad, words in ((None, "number of pixels"), (float("nan"), "number of pixels"), (0, "out of range"),
                       (True, "number of pixels"), ("512", "number of pixels")):  # fmt: skip
        with pytest.raises(HyperSettingsError, match=words):
            events.native_size("sd15", bad, 512)


def test_native_size_is_the_selected_presets():
    # SDXL-Turbo is a 512² model although it is an SDXL one; the N-step LoRA follows the model type.
    assert events.native_size("sdxl", 1024, 1024, "turbo") == [512, 512]
    assert events.native_size("sdxl", 832, 1216, "turbo") == [448, 640]
    assert events.native_size("sdxl", 512, 512, "hyper-4step") == [1024, 1024]
    assert events.native_size("sd15", 1024, 1024, "hyper-4step") == [512, 512]
    assert events.native_size("sd15", 1024, 1024, "turbo") == [512, 512]  # no SD1.5 row: the model type's
    assert events.native_size("sdxl", 512, 512, "house-fast") == [1024, 1024]
    with pytest.raises(HyperSettingsError, match="unknown preset"):
        events.native_size("sdxl", 512, 512, "nope")


def test_error_status_is_escaped():
    assert (
        events.error_status_html("Hyper-SD: <b>")
        == '<div class="hypersd-status hypersd-error">Hyper-SD: &lt;b&gt;</div>'
    )


def test_late_wiring_waits_for_the_boxes_webui_builds_after_the_accordion():
    from hypersd.webui.compare_fields import MAIN_FIELDS, LateWiring

    late, wired = LateWiring(), []
    for name in ("prompt", "neg_prompt", "sampling", "scheduler", "steps"):  # v1.10.1: built before the accordions
        late.built(name, f"box:{name}")
    late.when_built(MAIN_FIELDS, lambda *boxes: wired.append(("compare", boxes)))
    late.when_built(("width", "height"), lambda w, h: wired.append(("size", (w, h))))
    assert wired == [] and set(late.waiting[0]) == {"seed", "width", "height", "cfg_scale"}
    for name in ("width", "height"):
        late.built(name, f"box:{name}")
    assert wired == [("size", ("box:width", "box:height"))]
    for name in ("cfg_scale", "seed", "seed"):  # a box seen twice wires nothing twice
        late.built(name, f"box:{name}")
    assert wired[1] == ("compare", tuple(f"box:{n}" for n in MAIN_FIELDS)) and len(wired) == 2
    assert late.waiting == ()


@pytest.mark.parametrize(("normal", "hyper", "words"), [(10.0, 2.0, "5.0× faster"), (2.0, 3.0, "1.5× slower")])
def test_compare_speed_words(normal, hyper, words):
    assert events.speed_words(normal, hyper) == words
