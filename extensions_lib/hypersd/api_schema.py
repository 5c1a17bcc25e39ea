"""The JSON schema of the accordion's API arguments, rendered from :data:`hypersd.settings.FIELDS`.

WebUI serves it at :data:`SCHEMA_ROUTE` (``hypersd.webui.api_routes``), the way adetailer serves its own.  It
describes what a client puts into ``alwayson_scripts["hyper-sd"]["args"]``, in either form:

- the dict form, ``[{"enabled": true, "preset": "hyper-4step"}]``: an object of the fields by name, none required,
  no others allowed; items after the object are ignored (WebUI itself appends the UI's values there);
- the positional form, ``[true, "hyper-4step", "tcd", 4]``: the fields in their stable order, as many as wanted.

:func:`hypersd.settings.from_api` accepts exactly what this schema allows (a test checks the two against a battery
of payloads), and :func:`args_table` is the README's table of the arguments (a test checks that they agree).
"""

from __future__ import annotations

import json
from typing import Any

from hypersd.settings import API_KEYS, FIELDS, NULLABLE, FieldSpec

SCHEMA_ROUTE = "/hypersd/v1/schema"
SCRIPT_NAME = "hyper-sd"  # the key in "alwayson_scripts": the script's title, lowercased
NULL_RULE = (
    f"null is accepted only by {', '.join(NULLABLE)} and means the preset's value (as their auto numbers do); "
    "every other field refuses null: leave the key out of the dict form to get its default."
)
_NO_CONTROL_CHARACTERS = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"


def field_schema(spec: FieldSpec) -> dict[str, Any]:
    """The JSON schema of one field's value."""
    description = spec.label + (f": {spec.help}" if spec.help else "")
    if spec.kind is bool:
        out: dict[str, Any] = {"type": "boolean"}
    elif spec.kind is str:
        out = {"type": "string"}
        if spec.choices is not None:
            out["enum"] = list(spec.choices)
        if spec.max_length is not None:
            out["maxLength"] = spec.max_length
        if spec.choices is None and not spec.internal:
            out["pattern"] = _NO_CONTROL_CHARACTERS
    else:
        number = {"type": "integer" if spec.kind is int else "number"}
        number.update({"minimum": spec.minimum, "maximum": spec.maximum})
        options = [number]
        if spec.auto is not None:
            options.append({"const": spec.auto, "description": "the preset's value"})
        if spec.nullable:
            options.append({"type": "null"})
        out = {"anyOf": options} if len(options) > 1 else number
    return {**out, "default": spec.default, "description": description}


def script_args_schema() -> dict[str, Any]:
    """The schema of ``alwayson_scripts["hyper-sd"]["args"]`` (JSON Schema 2020-12)."""
    by_name = {spec.name: field_schema(spec) for spec in FIELDS}
    as_dict = {
        "title": "dict form",
        "type": "object",
        "properties": {name: by_name[name] for name in API_KEYS},
        "additionalProperties": False,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ROUTE,
        "title": f'Hyper-SD script args: alwayson_scripts["{SCRIPT_NAME}"]["args"]',
        "description": "Either one object of the fields by name, or the fields by position in this order: "
        f"{', '.join(spec.name for spec in FIELDS)}. {NULL_RULE}",
        "anyOf": [
            {"type": "array", "prefixItems": [as_dict], "minItems": 1},
            {
                "title": "positional form",
                "type": "array",
                "prefixItems": [by_name[spec.name] for spec in FIELDS],
                "items": False,
            },
        ],
    }


def _allowed(spec: FieldSpec) -> str:
    if spec.choices is not None:
        if len(spec.choices) > 4:
            return f"one of {len(spec.choices)} ids (`GET {SCHEMA_ROUTE}` lists them)"
        return ", ".join(f"`{c}`" for c in spec.choices)
    if spec.kind is bool:
        return "`true`, `false`"
    if spec.kind is str:
        return f"text, at most {spec.max_length} characters" if spec.max_length else "text"
    kind = "integer" if spec.kind is int else "number"
    auto = f"; `{spec.auto:g}` or `null`: the preset's" if spec.auto is not None else ""
    return f"{kind} {spec.minimum:g}…{spec.maximum:g}{auto}"


def args_table() -> str:
    """The README's table of the arguments (markdown), one row per field in the positional order."""
    rows = ["| # | field | values | default |", "|---|---|---|---|"]
    for index, spec in enumerate(FIELDS):
        default = f"`{json.dumps(spec.default)}`"
        name = f"`{spec.name}`" + (" (internal)" if spec.internal else "")
        rows.append(f"| {index} | {name} | {_allowed(spec)} | {default} |")
    return "\n".join(rows)
