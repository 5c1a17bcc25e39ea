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

from hypersd.infotext import INFOTEXT_KEY, InfotextReading, format_infotext, parse_infotext_value, read_infotext
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
    reading = read_infotext(webui_parse(webui_infotext("a cat <lora:Hyper-SDXL-4steps-lora:1>", params)))
    assert reading.problem is None
    return reading.settings


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


def test_off_writes_nothing_and_absent_reads_nothing():
    assert format_infotext(HyperSettings(enabled=False)) == {}
    assert read_infotext({"Steps": "20", "Prompt": "a cat", "Negative prompt": ""}) == InfotextReading()
    assert read_infotext({}) == InfotextReading() and read_infotext(None) == InfotextReading()


@pytest.mark.parametrize(
    "value, message",
    [
        ("v2 preset=hyper-4step", "version v2, this extension reads v1; update the extension"),
        ("v999 preset=hyper-4step", "version v999"),
        ("preset=hyper-4step", "does not start with a version"),
        ("v1 preset=hyper-99step", "unknown preset 'hyper-99step'"),
        ("v1 preset=hyper-4step, weight=9", "weight = 9.0 is out of range"),
        ("v1 preset=hyper-4step, steps=four", "steps must be a JSON number"),
        ("v1 preset=hyper-4step, size=maybe", "size must be true or false"),
        ("", "does not start with a version"),
        ("v1 preset=lcm-lora, colour=red, steps=6", "unknown or repeated items 'colour=red'"),
        ("v1 preset=lcm-lora, preset=turbo", "unknown or repeated items 'preset=turbo'"),
        ("v1 preset=", "unknown preset ''"),
        ('v1 preset="hyper-4step"', "it holds '\"'"),
        ("v1 preset=hyper-4step, lora=a\nb", "it holds '\\n'"),
        ("v1 " + "lora=x" * 40_000, "240,003 characters long, at most 4,096"),
    ],
)
def test_unreadable_entries_are_refused_with_a_message(value, message):
    reading = read_infotext({INFOTEXT_KEY: value})
    assert reading.settings is None
    assert reading.problem.startswith("Hyper-SD: the infotext's Hyper-SD entry cannot be restored: ")
    assert message in reading.problem, reading.problem
    assert reading.problem.endswith("Remove the entry to generate without Hyper-SD, or pick a preset.")


def test_an_entry_lost_in_the_prompt_by_a_line_break_is_refused():
    # A raw line break inside the entry: WebUI's parser finds fewer than 3 parameters on the last line and takes
    # the whole parameter line for the negative prompt (modules/infotext_utils.py parse_generation_parameters).
    text = 'a cat\nNegative prompt: ugly\nSteps: 4, Sampler: TCD, Hyper-SD: "v1 preset=hyper-4step,\nsteps=4", Seed: 1'
    params = webui_parse_all(text)
    assert INFOTEXT_KEY not in params and "Hyper-SD:" in params["Negative prompt"]
    reading = read_infotext(params)
    assert reading.settings is None and "took it for the negative prompt" in reading.problem
    # the words in a prompt are not an entry
    assert read_infotext({"Prompt": "a Hyper-SD: demo poster", "Negative prompt": ""}) == InfotextReading()


def webui_parse_all(text):
    """parse_generation_parameters' split of prompt, negative prompt and the parameter line (its first lines)."""
    *lines, last = text.strip().split("\n")
    if len(RE_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, done = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            done, line = True, line[16:].strip()
        (negative if done else prompt).append(line)
    return {**(webui_parse(last) if last else {}), "Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}


def test_what_the_writer_writes_is_never_refused():
    # the longest entry the writer can make: every field, a LoRA name of percent-encoded characters
    settings = HyperSettings(True, "distilled", "dpmpp_sde_karras", 150, 29.5, 0.125, 1.75, True, ",%=" * 85, False)
    value = format_infotext(settings)[INFOTEXT_KEY]
    assert len(value) < 1500
    assert parse_infotext_value(value) == InfotextReading(settings=settings)
