"""The published schema of the script args: from_api accepts exactly what it allows, and the README says the same.

``validate`` below is an independent evaluator of the JSON Schema 2020-12 keywords the schema uses (not a copy of
our checks): a payload is valid under the schema iff ``from_api`` accepts it as WebUI hands it over (the request's
args completed with the UI's default values, ``modules/api/api.py`` ``init_script_args``).
"""

import json
import math
import pathlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypersd import api_schema, infotext
from hypersd.presets import PRESET_IDS
from hypersd.settings import FIELD_NAMES, FIELDS, NULLABLE, HyperSettings, HyperSettingsError, from_api
from hypersd.train.names import MAX_OUTPUT_NAME

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
SCHEMA = api_schema.script_args_schema()


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_equal(a, b):
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


TYPES = {
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: _is_number(v) and math.isfinite(v) and v == int(v),
    "number": _is_number,
    "string": lambda v: isinstance(v, str),
    "null": lambda v: v is None,
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


def validate(schema, value):  # noqa: C901 - one branch per keyword
    if schema is True:
        return True
    if schema is False:
        return False
    if "type" in schema and not TYPES[schema["type"]](value):
        return False
    if "enum" in schema and not any(_json_equal(value, option) for option in schema["enum"]):
        return False
    if "const" in schema and not _json_equal(value, schema["const"]):
        return False
    if "anyOf" in schema and not any(validate(option, value) for option in schema["anyOf"]):
        return False
    if _is_number(value):
        if "minimum" in schema and not value >= schema["minimum"]:
            return False
        if "maximum" in schema and not value <= schema["maximum"]:
            return False
    if isinstance(value, str):
        if len(value) > schema.get("maxLength", math.inf):
            return False
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            return False
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            return False
        prefix = schema.get("prefixItems", [])
        if not all(validate(s, v) for s, v in zip(prefix, value, strict=False)):
            return False
        if not all(validate(schema.get("items", True), v) for v in value[len(prefix) :]):
            return False
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                if not validate(properties[key], item):
                    return False
            elif not validate(schema.get("additionalProperties", True), item):
                return False
    return True


UI_DEFAULTS = HyperSettings().to_ui_values()


def accepted(args):
    """What process() decides for a request's args: WebUI appends the UI's values for the positions left out."""
    try:
        from_api(list(args) + UI_DEFAULTS[len(args) :])
    except HyperSettingsError:
        return False
    return True


PAYLOADS = [
    [], [True], [True, "hyper-4step", "tcd", 4, 1.0, 0.3, 1.0, False, "", True], [False, "turbo"],
    [True, "hyper-4step", "tcd", 4.0, 1, 0, -1], [True, "hyper-4step", "tcd", None, None, None, None],
    [True, "hyper-4step", "tcd", 4, 1.0, 0.3, 1.0, False, "", True, ""],
    [True, "hyper-4step", "tcd", 4, 1.0, 0.3, 1.0, False, "", True, "Hyper-SD: refused"],
    [True, "hyper-4step", "tcd", 4, 1.0, 0.3, 1.0, False, "", True, "", "extra"],
    [{"enabled": True}], [{}], [{"enabled": True, "preset": "distilled", "lora": "house"}],
    [{"enabled": True}, "ignored", 5], [{"steps": None, "cfg": None, "gamma": None, "weight": None}],
    [{"steps": 0, "cfg": 0, "gamma": -1, "weight": -1}], [{"steps": 4.0}], [{"gamma": 0}, True],
    # refused
    ["true"], [1], [None], [True, None], [True, "hyper-3step"], [True, " hyper-4step"], [True, "hyper-4step", "ddim"],
    [True, "hyper-4step", "tcd", 4.5], [True, "hyper-4step", "tcd", "4"], [True, "hyper-4step", "tcd", True],
    [True, "hyper-4step", "tcd", 151], [True, "hyper-4step", "tcd", -1], [True, "hyper-4step", "tcd", 4, 0.5],
    [True, "hyper-4step", "tcd", 4, 31], [True, "hyper-4step", "tcd", 4, 1, 1.01], [True, "hyper-4step", "tcd", 4, 1,
    -0.5], [True, "hyper-4step", "tcd", 4, 1, 0.3, 2.5], [True, "hyper-4step", "tcd", 4, 1, 0.3, 1, "no"],
    [True, "hyper-4step", "tcd", 4, 1, 0.3, 1, False, "a\nb"], [True, "hyper-4step", "tcd", 4, 1, 0.3, 1, False,
    "x" * 256], [True, "hyper-4step", "tcd", 4, 1, 0.3, 1, False, "", None], [True, "hyper-4step", "tcd", 4, 1,
    0.3, 1, False, "", True, None], [True, "hyper-4step", "tcd", 4, 1, 0.3, 1, False, "", True, "x" * 2001],
    [{"stepz": 4}], [{"restore_error": ""}], [{"enabled": "yes"}], [{"preset": None}], [{"lora": None}],
    [{"cfg": float("nan")}], [{"cfg": float("inf")}], [{"weight": [1]}], [{"sampler": {"a": 1}}], [[True]],
    ["hyper-4step"], [{"steps": 1e400}],
]  # fmt: skip


@pytest.mark.parametrize("payload", PAYLOADS, ids=[json.dumps(p, default=str)[:60] for p in PAYLOADS])
def test_the_schema_and_from_api_agree(payload):
    assert validate(SCHEMA, payload) == accepted(payload)


def test_the_battery_holds_both_verdicts():
    verdicts = [accepted(p) for p in PAYLOADS]
    assert verdicts.count(True) >= 15 and verdicts.count(False) >= 30


def field_values(spec):
    """Values near and far from what a field takes: its type, its bounds, other JSON types."""
    anything = st.one_of(st.none(), st.booleans(), st.integers(-3, 200), st.floats(allow_nan=True), st.text(max_size=8))
    if spec.choices is not None:
        return st.one_of(st.sampled_from(list(spec.choices)), anything)
    if spec.kind in (int, float):
        return st.one_of(st.sampled_from([spec.minimum, spec.maximum, spec.auto, 4.0, 0.5]), anything)
    return anything


positional = st.tuples(*[field_values(spec) for spec in FIELDS]).flatmap(
    lambda values: st.integers(0, len(values)).map(lambda n: list(values[:n]))
)
as_dict = st.dictionaries(st.sampled_from([*FIELD_NAMES, "colour"]), st.one_of(st.booleans(), st.none(),
                          st.floats(-2, 200), st.sampled_from([*PRESET_IDS[:3], "tcd", "x"])), max_size=4).map(
    lambda d: [d]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.one_of(positional, as_dict))
def test_the_schema_and_from_api_agree_on_generated_payloads(payload):
    assert validate(SCHEMA, payload) == accepted(payload)


def test_the_schema_is_json_and_names_every_field_once():
    text = json.dumps(SCHEMA, allow_nan=False)
    assert json.loads(text) == SCHEMA
    dict_form, positional_form = SCHEMA["anyOf"]
    assert list(dict_form["prefixItems"][0]["properties"]) == [f.name for f in FIELDS if not f.internal]
    assert len(positional_form["prefixItems"]) == len(FIELDS) and positional_form["items"] is False
    nullable = {f.name for f in FIELDS if validate(positional_form["prefixItems"][FIELD_NAMES.index(f.name)], None)}
    assert nullable == set(NULLABLE) == {"steps", "cfg", "gamma", "weight"}


def readme_api_section():
    text = README.read_text(encoding="utf-8")
    return text[text.index("## API\n") : text.index("## X/Y/Z grid")]


def test_the_readme_api_section_and_the_schema_agree():
    section = readme_api_section()
    assert f"`GET {api_schema.SCHEMA_ROUTE}`" in section
    assert f"`{', '.join(FIELD_NAMES)}`" in section  # the positional order
    assert api_schema.args_table() in section
    assert api_schema.NULL_RULE in section
    assert f"more than {infotext.MAX_VALUE_LENGTH:,} characters" in section
    example = json.loads(section[section.index("{", section.index("POST /sdapi/v1/txt2img")) :].split("\n```")[0])
    args = example["alwayson_scripts"][api_schema.SCRIPT_NAME]["args"]
    assert validate(SCHEMA, args) and accepted(args)


def test_the_readme_train_section_states_the_name_limit():
    assert f"at most {MAX_OUTPUT_NAME} characters" in README.read_text(encoding="utf-8")


def test_the_route_is_added_on_app_start():
    from hypersd.webui import api_routes

    class App:
        routes = {}

        def add_api_route(self, path, endpoint, methods, **kwargs):
            self.routes[path] = (endpoint, methods)

    registered = []
    api_routes.register(type("Callbacks", (), {"on_app_started": lambda self, cb, name: registered.append(cb)})())
    app = App()
    registered[0](None, app)
    endpoint, methods = app.routes[api_routes.SCHEMA_ROUTE]
    assert methods == ["GET"]
    import asyncio

    assert asyncio.run(endpoint()) == SCHEMA
