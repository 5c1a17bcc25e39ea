"""The one infotext entry of Hyper-SD: ``Hyper-SD: "v1 preset=hyper-4step, sampler=tcd, steps=4, …"``.

Format of the value: a version token (``v1``), a space, then ``key=value`` pairs joined with
``", "``; keys are the ``infotext_key`` of :data:`hypersd.settings.FIELDS`; booleans are ``1``/``0``;
numbers are written with up to 6 significant digits; in text values the characters
``% , = " : \\`` and line breaks are percent-encoded, so a value never contains a separator.

How it survives WebUI v1.10.1 (``modules/processing.py`` ``create_infotext`` and
``modules/infotext_utils.py``): the infotext line is ``", ".join(f"{k}: {quote(v)}")`` where
``quote`` wraps a value containing ``,``, ``:`` or a line break in ``json.dumps``; our value
contains ``", "``, so WebUI always writes it JSON-quoted.  ``parse_generation_parameters`` reads
the line with ``re_param = r'\\s*(\\w[\\w \\-/]+):\\s*("(?:\\\\.|[^\\\\"])+"|[^,]*)(?:,|$)'`` and
``json.loads`` a value that starts and ends with ``"`` — giving back exactly our string.
The entry is present only when the accordion was on.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from hypersd.settings import FIELDS, HyperSettings, HyperSettingsError

INFOTEXT_KEY = "Hyper-SD"
VERSION = 1
_ENCODE = {c: f"%{ord(c):02X}" for c in '%,="\\:\n\r'}
_RE_VERSION = re.compile(r"^v(\d+)(?:\s+|$)")


def _encode_text(text: str) -> str:
    return "".join(_ENCODE.get(c, c) for c in text)


def _format_value(kind: type, value: Any) -> str:
    if kind is bool:
        return "1" if value else "0"
    if kind is str:
        return _encode_text(value)
    return format(value, ".6g") if kind is float else str(value)


def format_infotext_value(settings: HyperSettings) -> str:
    """The value of the "Hyper-SD" entry; fields that are None (preset default) or empty are left out."""
    pairs = []
    for spec in FIELDS:
        value = getattr(settings, spec.name)
        if spec.infotext_key is None or value is None or value == "":
            continue
        pairs.append(f"{spec.infotext_key}={_format_value(spec.kind, value)}")
    return f"v{VERSION} " + ", ".join(pairs)


def format_infotext(settings: HyperSettings) -> dict[str, str]:
    """``{"Hyper-SD": value}`` for ``p.extra_generation_params``; ``{}`` when the accordion is off."""
    if not settings.enabled:
        return {}
    return {INFOTEXT_KEY: format_infotext_value(settings)}


def parse_infotext_value(text: str, warnings: list[str] | None = None) -> HyperSettings | None:
    """Settings from the entry's value; None (and a warning appended) when it cannot be read."""

    def fail(message: str) -> None:
        if warnings is not None:
            warnings.append(message)

    text = str(text).strip()
    match = _RE_VERSION.match(text)
    if match is None:
        fail(f"Hyper-SD: the infotext entry {text[:60]!r} has no version; it was not restored")
        return None
    version = int(match.group(1))
    if version != VERSION:
        fail(f"Hyper-SD: infotext version v{version} is not known to this version (v{VERSION}); update the extension")
        return None
    by_key = {spec.infotext_key: spec for spec in FIELDS if spec.infotext_key}
    values: dict[str, Any] = {"enabled": True}
    body = text[match.end() :].strip()
    for item in filter(None, (part.strip() for part in body.split(","))):
        key, sep, raw = item.partition("=")
        spec = by_key.get(key.strip())
        if not sep or spec is None:
            fail(f"Hyper-SD: unknown infotext item {item!r} ignored")
            continue
        raw = urllib.parse.unquote(raw.strip()) if spec.kind is str else raw.strip()
        values[spec.name] = raw
    try:
        return HyperSettings(**values)
    except HyperSettingsError as error:
        fail(f"{error} (in the infotext; it was not restored)")
        return None


def parse_infotext(params: Mapping[str, Any], warnings: list[str] | None = None) -> HyperSettings | None:
    """Settings from WebUI's parsed infotext (``parse_generation_parameters``'s dict).

    None when there is no "Hyper-SD" entry (the accordion was off) or it cannot be read (then a
    warning is appended to ``warnings``); never raises for bad input.
    """
    value = params.get(INFOTEXT_KEY) if params else None
    if value is None:
        return None
    return parse_infotext_value(value, warnings)
