"""The "Hyper-SD" infotext entry round-trips through WebUI's infotext line format.

The writer and reader below are independent re-statements of WebUI v1.10.1's rules (read in
kklouzal/stable-diffusion-webui tag v1.10.1), not copies of our module:
- modules/processing.py create_infotext: ``", ".join(f"{k}: {quote(v)}")`` over the params;
- modules/infotext_utils.py quote(): a value with ",", "\\n" or ":" becomes ``json.dumps(v, ensure_ascii=False)``;
- parse_generation_parameters: the last line is read with ``re_param`` (below); a value in quotes is json.loads'ed.
"""

import json
import re

import pytest

from hypersd.infotext import INFOTEXT_KEY, format_infotext, parse_infotext, parse_infotext_value
from hypersd.settings import HyperSettings

RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def webui_quote(value):
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if ("," in text or "\n" in text or ":" in text) else text


def webui_infotext(prompt, params):
    line = ", ".join(f"{k}: {webui_quote(v)}" for k, v in params.items() if v is not None)
    return f"{prompt}\nNegative prompt: ugly, blurry\n{line}"


def webui_parse(text):
    *_, last = text.strip().split("\n")
    res = {}
    for k, v in RE_PARAM.findall(last):
        if v and v[0] == '"' and v[-1] == '"':
            v = json.loads(v)
        res[k] = v
    return res


def round_trip(settings):
    params = {"Steps": 4, "Sampler": "TCD", "Schedule type": "TCD", "CFG scale": 1, "Seed": 1, "Size": "1024x1024"}
    params.update(format_infotext(settings))
    params["Version"] = "v1.10.1"
    return parse_infotext(webui_parse(webui_infotext("a cat <lora:Hyper-SDXL-4steps-lora:1>", params)))


@pytest.mark.parametrize(
    "settings",
    [
        HyperSettings(enabled=True),
        HyperSettings(True, "hyper-4step", "tcd", 4, 1.0, 0.3, 1.0, False, "", True),
        HyperSettings(True, "hyper-8step", "dpmpp_sde_karras", 8, 2.0, None, 0.85, True, "", False),
        HyperSettings(True, "hyper-unified-tcd", "tcd", 6, 1.5, 0.125, 0.75, False, "", True),
        HyperSettings(True, "distilled", "tcd", 4, 1.0, 0.3, 1.0, False, 'house, v2: 50% = "best" ü\\', True),
    ],
)
def test_round_trip_through_webui_format(settings):
    assert round_trip(settings) == settings


def test_value_is_minimal_versioned_and_quoted_by_webui():
    settings = HyperSettings(True, "hyper-4step", "tcd", 4, 1.0, 0.3, 1.0, False, "", True)
    value = format_infotext(settings)[INFOTEXT_KEY]
    assert value == "v1 preset=hyper-4step, sampler=tcd, steps=4, cfg=1, gamma=0.3, weight=1, size=0, hires=1"
    line = webui_infotext("p", {"Steps": 4, INFOTEXT_KEY: value}).split("\n")[-1]
    assert line == f'Steps: 4, Hyper-SD: "{value}"'
    # Unset (preset default) fields are left out.
    assert format_infotext(HyperSettings(enabled=True))[INFOTEXT_KEY] == (
        "v1 preset=hyper-4step, sampler=tcd, size=0, hires=1"
    )


def test_off_writes_nothing_and_absent_reads_none():
    assert format_infotext(HyperSettings(enabled=False)) == {}
    warnings = []
    assert parse_infotext({"Steps": "20"}, warnings) is None and warnings == []
    assert parse_infotext({}, warnings) is None


@pytest.mark.parametrize(
    "value, message",
    [
        ("v2 preset=hyper-4step", "version v2"),
        ("preset=hyper-4step", "no version"),
        ("v1 preset=hyper-99step", "unknown preset"),
        ("v1 preset=hyper-4step, weight=9", "out of range"),
        ("", "no version"),
    ],
)
def test_unreadable_entries_give_none_and_a_warning(value, message):
    warnings = []
    assert parse_infotext({INFOTEXT_KEY: value}, warnings) is None
    assert len(warnings) == 1 and message in warnings[0] and warnings[0].startswith("Hyper-SD: ")


def test_unknown_items_are_ignored_with_a_warning():
    warnings = []
    settings = parse_infotext_value("v1 preset=lcm-lora, colour=red, steps=6", warnings)
    assert settings == HyperSettings(enabled=True, preset="lcm-lora", steps=6)
    assert warnings and "colour=red" in warnings[0]
