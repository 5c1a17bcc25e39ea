"""The settings object and API payload validation: positional and dict forms, clear errors, no silent defaults."""

import pytest

from hypersd.settings import FIELD_NAMES, FIELDS, HyperSettings, HyperSettingsError, from_api, parse_bool

# The documented, stable positional order (settings.py docstring; the API depends on it).
DOCUMENTED_ORDER = [
    "enabled",
    "preset",
    "sampler",
    "steps",
    "cfg",
    "gamma",
    "weight",
    "apply_size",
    "lora",
    "fix_hires",
    "restore_error",
]


def test_positional_order_is_the_documented_one():
    assert list(FIELD_NAMES) == DOCUMENTED_ORDER


def test_defaults_are_off_and_take_the_preset_values():
    s = HyperSettings()
    assert (s.enabled, s.preset, s.sampler, s.steps, s.cfg, s.gamma, s.weight) == (
        False, "hyper-4step", "tcd", None, None, None, None
    )  # fmt: skip
    assert from_api([]) == s and from_api({}) == s


def test_positional_round_trip():
    s = HyperSettings(True, "hyper-8step", "euler_trailing", 8, 1.5, None, 0.8, True, "", False)
    assert s.to_args() == [True, "hyper-8step", "euler_trailing", 8, 1.5, None, 0.8, True, "", False, ""]
    assert from_api(s.to_args()) == s
    assert from_api(tuple(s.to_args())) == s


def test_the_documented_payload_examples():
    positional = from_api([True, "hyper-4step", "tcd", 4, 1.0, 0.3, 1.0, False, "", True])
    assert positional == HyperSettings(enabled=True, steps=4, cfg=1.0, gamma=0.3, weight=1.0)
    as_dict = from_api([{"enabled": True, "preset": "hyper-4step", "weight": 0.8}])
    assert as_dict == HyperSettings(enabled=True, weight=0.8)
    assert from_api({"enabled": True, "weight": 0.8}) == as_dict
    # What process(p, *args) really gets for "args": [{...}]: WebUI appends the UI defaults (api.py init_script_args).
    ui_defaults = ["hyper-4step", "tcd", 4, 1.0, 0.3, 1.0, False, "", True]
    assert from_api([{"enabled": True, "weight": 0.8}, *ui_defaults]) == as_dict


def test_gradio_values_are_accepted():
    # Sliders send floats for integer fields and integers for float fields; both are JSON numbers.
    s = from_api([True, "hyper-4step", "tcd", 4.0, 2, 0.5, 1, False, "", True])
    assert (s.steps, s.cfg, s.gamma, s.weight, s.apply_size, s.fix_hires) == (4, 2.0, 0.5, 1.0, False, True)
    assert isinstance(s.steps, int) and isinstance(s.cfg, float)


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"steps": "4"}, "steps must be a JSON number such as 4 \\(not text\\), got str '4'"),
        ({"cfg": "2"}, "cfg must be a JSON number such as 1.5"),
        ({"enabled": "false"}, "enabled must be true or false \\(a JSON boolean\\), got str 'false'"),
        ({"enabled": 1}, "enabled must be true or false"),
        ({"preset": " hyper-4step"}, "unknown preset ' hyper-4step'"),
    ],
)
def test_values_are_their_json_types_not_text(payload, message):
    # The published schema (hypersd.api_schema) says so; the infotext reader converts its own text first.
    with pytest.raises(HyperSettingsError, match=message):
        from_api(payload)


@pytest.mark.parametrize(
    "text, value",
    [("false", False), ("False", False), ("0", False), ("off", False), ("no", False), ("true", True), ("1", True),
     (" Yes ", True), (True, True), (0, False), (1, True)],
)  # fmt: skip
def test_real_bool_parsing(text, value):
    assert parse_bool(text) is value


@pytest.mark.parametrize("bad", ["maybe", 2, -1, 0.5, [], None])
def test_bad_bools_are_errors(bad):
    with pytest.raises(HyperSettingsError, match="^Hyper-SD: .*true or false"):
        parse_bool(bad)


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"enabled": True, "preset": "hyper-3step"}, "unknown preset 'hyper-3step'"),
        ({"sampler": "euler"}, "unknown sampler 'euler'"),
        ({"weight": 2.5}, "weight = 2.5 is out of range"),
        ({"weight": -0.1}, "out of range"),
        ({"gamma": 1.2}, "gamma = 1.2 is out of range"),
        ({"steps": -1}, "steps = -1 is out of range"),
        ({"cfg": 0.5}, "cfg = 0.5 is out of range"),
        ({"steps": 4.5}, "whole number"),
        ({"steps": "four"}, "must be a JSON number"),
        ({"steps": True}, "must be a JSON number"),
        ({"cfg": float("nan")}, "finite"),
        ({"cfg": [1]}, "must be a JSON number"),
        ({"preset": 4}, "must be a string"),
        ({"enabled": "sure"}, "true or false"),
        ({"enabled": None}, "enabled must not be null \\(only steps, cfg, gamma, weight may be\\)"),
        ({"preset": None}, "leave it out of the dict to get its default, 'hyper-4step'"),
        ({"lora": "a" * 256}, "lora is 256 characters long; at most 255"),
        ({"lora": "house\nv2"}, "holds control characters"),
        ({"restore_error": "x"}, "restore_error is set by WebUI from the request's infotext; leave it out"),
        ({"stepz": 4}, "unknown argument.*stepz"),
        ({4: 4}, "unknown argument"),
    ],
)
def test_invalid_payloads_get_clear_errors(payload, message):
    with pytest.raises(HyperSettingsError, match=message) as info:
        from_api(payload)
    assert str(info.value).startswith("Hyper-SD: ")


def test_positional_errors():
    with pytest.raises(HyperSettingsError, match="at most 11"):
        from_api([True] * 12)
    with pytest.raises(HyperSettingsError, match="unknown sampler"):
        from_api([True, "hyper-4step", "dpm"])
    with pytest.raises(HyperSettingsError, match="must be a list"):
        from_api("enabled")
    with pytest.raises(HyperSettingsError, match="must be a list"):
        from_api(42)


def test_nullable_fields_accept_none_and_others_do_not():
    nullable = {f.name for f in FIELDS if f.nullable}
    assert nullable == {"steps", "cfg", "gamma", "weight"}
    assert from_api({"steps": None, "cfg": None}).steps is None


def test_replace_validates_too():
    s = HyperSettings(enabled=True)
    assert s.replace(preset="lcm-lora").preset == "lcm-lora"
    with pytest.raises(HyperSettingsError):
        s.replace(preset="nope")
    with pytest.raises(HyperSettingsError, match="unknown setting"):
        s.replace(colour="red")


def test_every_field_has_a_label_and_a_default_that_validates():
    for f in FIELDS:
        assert f.label
        HyperSettings(**{f.name: f.default})
    assert [f.infotext_key for f in FIELDS if f.infotext_key] == [
        "preset", "sampler", "steps", "cfg", "gamma", "weight", "size", "lora", "hires"
    ]  # fmt: skip


def test_with_preset_resets_the_overrides():
    s = HyperSettings(False, "hyper-4step", "dpmpp_sde_karras", 6, 2.0, 0.5, 0.7, True, "", False)
    assert s.with_preset("lcm-lora") == HyperSettings(
        True, "lcm-lora", "dpmpp_sde_karras", None, None, None, None, True, "", False
    )
    with pytest.raises(HyperSettingsError, match="unknown preset"):
        s.with_preset("lcm")


def test_auto_values_mean_the_preset_recommendation():
    s = from_api([True, "lightning-8step", "tcd", 0, 0.0, -1, -1.0])
    assert (s.steps, s.cfg, s.gamma, s.weight) == (None, None, None, None)
    assert HyperSettings().to_ui_values() == [False, "hyper-4step", "tcd", 0, 0, -1, -1, False, "", True, ""]
    assert from_api(HyperSettings().to_ui_values()) == HyperSettings()
    # A short positional request completed with the UI defaults (api.py) gets the chosen preset's values.
    ui = HyperSettings().to_ui_values()
    assert from_api([True, "lightning-8step", *ui[2:]]) == HyperSettings(enabled=True, preset="lightning-8step")
    # Other values below the minimum are still errors.
    with pytest.raises(HyperSettingsError, match="out of range"):
        from_api({"gamma": -0.5})
