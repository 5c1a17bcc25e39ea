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

Reading it back is all or nothing (:func:`read_infotext`): an entry that is not exactly what the writer makes
(another version, too long, a raw quote or control character, an unknown or repeated key, an invalid value) is
not restored halfway and not dropped: the reading carries the problem, and the job is refused with it.  So a
new key needs a new version number: an older extension then says "update the extension" instead of making
another image.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
import urllib.parse
from collections.abc import Mapping
from typing import Any

from hypersd.settings import (
    FIELDS,
    FIELDS_BY_NAME,
    MAX_RESTORE_ERROR,
    HyperSettings,
    HyperSettingsError,
    parse_bool,
)

INFOTEXT_KEY = "Hyper-SD"
VERSION = 1
_ENCODE = {c: f"%{ord(c):02X}" for c in '%,="\\:\n\r'}
_RE_VERSION = re.compile(r"^v(\d+)(?:\s+|$)")
_RE_LOST_ENTRY = re.compile(r"(?:^|[\s,])Hyper-SD:\s*\"?v\d+")
#: The longest value ever written is well under 1,500 characters (every field, a 255-character LoRA name with each
#: character percent-encoded); anything longer was not written by this extension.
MAX_VALUE_LENGTH = 4096


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


@dataclasses.dataclass(frozen=True)
class InfotextReading:
    """What an image's infotext says about Hyper-SD.

    ``settings`` restored (the entry was read), or ``problem``: the entry is there but cannot be restored, and the
    job is refused with this message rather than quietly made without Hyper-SD.  Neither: there is no entry (the
    accordion was off).
    """

    settings: HyperSettings | None = None
    problem: str | None = None


def _refused(why: str) -> InfotextReading:
    if len(why) > MAX_RESTORE_ERROR // 2:
        why = why[: MAX_RESTORE_ERROR // 2] + "…"
    return InfotextReading(
        problem=f"Hyper-SD: the infotext's Hyper-SD entry cannot be restored: {why}. Remove the entry to generate "
        "without Hyper-SD, or pick a preset."
    )


def _typed(kind: type, raw: str, name: str) -> Any:
    """The text of one item as the value HyperSettings takes (a bad number is left as text: it is refused there)."""
    if kind is str:
        return urllib.parse.unquote(raw)
    if kind is bool:
        return parse_bool(raw, name)
    try:
        return float(raw)
    except ValueError:
        return raw


def parse_infotext_value(text: str) -> InfotextReading:
    """The entry's value (what WebUI's infotext parser gives for the "Hyper-SD" key) read back, or why it cannot be.

    The writer (:func:`format_infotext_value`) never puts a raw quote, a line break or another control character
    into the value and stays far below :data:`MAX_VALUE_LENGTH`; a value that does was edited or damaged.
    """
    if not isinstance(text, str):
        return _refused(f"it is {type(text).__name__}, not text")
    if len(text) > MAX_VALUE_LENGTH:
        return _refused(f"it is {len(text):,} characters long, at most {MAX_VALUE_LENGTH:,} are ever written")
    damaged = sorted({repr(c) for c in text if c == '"' or unicodedata.category(c) == "Cc"})
    if damaged:
        return _refused(f"it holds {', '.join(damaged)}, which this extension never writes: it was edited or cut")
    text = text.strip()
    match = _RE_VERSION.match(text)
    if match is None:
        return _refused(f"{text[:60]!r} does not start with a version such as v{VERSION}")
    version = int(match.group(1))
    if version != VERSION:
        return _refused(f"it is version v{version}, this extension reads v{VERSION}; update the extension")
    by_key = {spec.infotext_key: spec for spec in FIELDS if spec.infotext_key}
    values: dict[str, Any] = {"enabled": True}
    unknown = []
    for item in filter(None, (part.strip() for part in text[match.end() :].split(","))):
        key, sep, raw = item.partition("=")
        spec = by_key.get(key.strip())
        if not sep or spec is None or spec.name in values:
            unknown.append(item)
            continue
        values[spec.name] = raw.strip()
    if unknown:
        shown = ", ".join(repr(item[:40]) for item in unknown[:5])
        return _refused(f"unknown or repeated items {shown} (known keys: {', '.join(by_key)})")
    try:
        typed = {
            name: _typed(FIELDS_BY_NAME[name].kind, raw, name) for name, raw in values.items() if name != "enabled"
        }
        return InfotextReading(settings=HyperSettings(enabled=True, **typed))
    except HyperSettingsError as error:
        return _refused(str(error).removeprefix("Hyper-SD: "))


def read_infotext(params: Mapping[str, Any] | None) -> InfotextReading:
    """What WebUI's parsed infotext (``parse_generation_parameters``'s dict) says about Hyper-SD; never raises.

    A line break inside a value makes WebUI read the whole parameter line as part of the prompt: an entry found
    there (``Hyper-SD: "v1 …``) cannot be restored either.
    """
    if not params:
        return InfotextReading()
    value = params.get(INFOTEXT_KEY)
    if value is not None:
        return parse_infotext_value(value)
    for key in ("Prompt", "Negative prompt"):
        text = params.get(key)
        if isinstance(text, str) and _RE_LOST_ENTRY.search(text):
            return _refused(
                f"WebUI could not read the infotext's parameter line (a line break inside a value?) and took it for "
                f"the {key.lower()}, with the Hyper-SD entry in it; repair the line"
            )
    return InfotextReading()
