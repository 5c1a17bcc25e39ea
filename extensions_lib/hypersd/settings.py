"""The one typed settings object of a Hyper-SD run, and its validation.

:data:`FIELDS` is the single table the UI, the infotext, paste, the API and its published JSON schema
(:mod:`hypersd.api_schema`, ``GET /hypersd/v1/schema``) are built from.  The positional order of the API
(``alwayson_scripts["hyper-sd"]["args"]``) is the order of :data:`FIELDS` and is stable: new fields are only
ever appended.

API payload, either form::

    "alwayson_scripts": {"hyper-sd": {"args": [true, "hyper-4step", "tcd", 4, 1.0, 0.3, 1.0, false, "", true]}}
    "alwayson_scripts": {"hyper-sd": {"args": [{"enabled": true, "preset": "hyper-4step", "weight": 0.8}]}}

Values have their JSON types: booleans are ``true``/``false``, numbers are numbers (an integer field takes
``4`` or ``4.0``), text is a string matched exactly.  ``null`` is accepted only by ``steps``, ``cfg``, ``gamma``
and ``weight``, where it means "the preset's recommendation", as does their "auto" value
(``FieldSpec.auto``: steps 0, cfg 0, gamma -1, weight -1), which a UI slider can hold; any other field refuses
``null``.  In the dict form, missing fields take their defaults.

WebUI passes ``process(p, *args)`` the request's args followed by the UI's default values for the
positions left out (``modules/api/api.py`` ``init_script_args``): a shorter positional list is
completed with the UI defaults, and after a dict the UI defaults are ignored.  So the UI's default
values must be :meth:`HyperSettings.to_ui_values` of ``HyperSettings()`` (the auto values): then a
short positional request gets the preset's recommendations, never another preset's numbers.

``restore_error`` is internal (``FieldSpec.internal``): the infotext reader sets it when an image's "Hyper-SD"
entry cannot be restored, and a job that is on with it set is refused with that message.  The dict form refuses
it; in the positional form it is what WebUI fills in from the request's ``infotext``.

Unknown keys, wrong types, out-of-range values and unknown presets or samplers raise :class:`HyperSettingsError`:
nothing is ever replaced by a default silently.
"""

from __future__ import annotations

import dataclasses
import math
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from hypersd.presets import ALL_PRESET_IDS, DEFAULT_PRESET, DEFAULT_SAMPLER_CHOICE, SAMPLER_CHOICE_IDS


class HyperSettingsError(ValueError):
    """Invalid Hyper-SD settings; the message starts with "Hyper-SD: " and says what to fix."""


MAX_LORA_NAME = 255  # a file name's stem
MAX_RESTORE_ERROR = 2000


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: type  # bool, int, float or str
    default: Any
    label: str  # UI label
    infotext_key: str | None  # key inside the "Hyper-SD" infotext value; None: not recorded
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False  # None = "the preset's recommendation"
    auto: float | None = None  # a number that means None too (for UI sliders, which cannot hold None)
    help: str = ""
    max_length: int | None = None  # text fields: at most this many characters
    internal: bool = False  # set by the infotext reader, hidden in the UI, refused in the API's dict form


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("enabled", bool, False, "Hyper-SD", None, help="the accordion's checkbox; off: nothing is changed"),
    FieldSpec("preset", str, DEFAULT_PRESET, "Preset", "preset", choices=ALL_PRESET_IDS),
    FieldSpec("sampler", str, DEFAULT_SAMPLER_CHOICE, "Sampler", "sampler", choices=SAMPLER_CHOICE_IDS,
              help="for the N-step Hyper LoRAs; other presets use their own sampler"),
    FieldSpec("steps", int, None, "Steps (0: preset)", "steps", minimum=1, maximum=150, nullable=True, auto=0),
    FieldSpec("cfg", float, None, "CFG scale (0: preset)", "cfg", minimum=1.0, maximum=30.0, nullable=True, auto=0),
    FieldSpec("gamma", float, None, "TCD gamma (-1: preset)", "gamma", minimum=0.0, maximum=1.0, nullable=True,
              auto=-1),
    FieldSpec("weight", float, None, "LoRA weight (-1: preset)", "weight", minimum=0.0, maximum=2.0, nullable=True,
              auto=-1),
    FieldSpec("apply_size", bool, False, "Set the native size", "size"),
    FieldSpec("lora", str, "", "Distilled LoRA", "lora", help="only for the 'distilled' preset: the LoRA's name",
              max_length=MAX_LORA_NAME),
    FieldSpec("fix_hires", bool, True, "Keep hires fix few-step", "hires",
              help="hires fix uses the same sampler and few steps"),
    FieldSpec("restore_error", str, "", "Infotext problem", None, max_length=MAX_RESTORE_ERROR, internal=True,
              help="set by WebUI from the request's infotext when its Hyper-SD entry cannot be restored; the job "
              "is then refused with this message: send \"\" or leave it out"),
)  # fmt: skip
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
FIELDS_BY_NAME: dict[str, FieldSpec] = {f.name: f for f in FIELDS}
NULLABLE: tuple[str, ...] = tuple(f.name for f in FIELDS if f.nullable)
API_KEYS: tuple[str, ...] = tuple(f.name for f in FIELDS if not f.internal)  # the dict form's keys


@dataclasses.dataclass(frozen=True)
class HyperSettings:
    """What the user asked for; :func:`hypersd.plan.make_plan` turns it into concrete values."""

    enabled: bool = False
    preset: str = DEFAULT_PRESET
    sampler: str = DEFAULT_SAMPLER_CHOICE
    steps: int | None = None
    cfg: float | None = None
    gamma: float | None = None
    weight: float | None = None
    apply_size: bool = False
    lora: str = ""
    fix_hires: bool = True
    restore_error: str = ""

    def __post_init__(self) -> None:
        for spec in FIELDS:
            object.__setattr__(self, spec.name, coerce_field(spec, getattr(self, spec.name)))

    def to_args(self) -> list[Any]:
        """Positional values in the stable API / ``ui()`` order."""
        return [getattr(self, name) for name in FIELD_NAMES]

    def to_ui_values(self) -> list[Any]:
        """Like :meth:`to_args`, with each None replaced by its field's auto value (for sliders)."""
        return [spec.auto if value is None and spec.auto is not None else value
                for spec, value in zip(FIELDS, self.to_args(), strict=True)]  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELD_NAMES}

    def replace(self, **changes: Any) -> HyperSettings:
        unknown = sorted(set(changes) - set(FIELD_NAMES))
        if unknown:
            raise HyperSettingsError(
                f"Hyper-SD: unknown setting(s) {', '.join(unknown)}; known: {', '.join(FIELD_NAMES)}"
            )
        return dataclasses.replace(self, **changes)

    def with_preset(self, preset_id: str) -> HyperSettings:
        """Switch preset (a preset button, the X/Y/Z axis): steps, CFG, gamma and weight go back to
        the new preset's recommendation; the accordion is turned on."""
        return self.replace(
            enabled=True, preset=preset_id, steps=None, cfg=None, gamma=None, weight=None, restore_error=""
        )

    @classmethod
    def from_api(cls, args: Any) -> HyperSettings:
        return from_api(args)


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


def parse_bool(value: Any, what: str = "value") -> bool:
    """A real bool parser: "false", "0", "off" are False (``bool("false")`` would be True)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, float) and value in (0.0, 1.0):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise HyperSettingsError(f"Hyper-SD: {what} must be true or false, got {value!r}")


def _type_error(spec: FieldSpec, value: Any, wanted: str) -> HyperSettingsError:
    shown = f"{value!r:.60}" if not isinstance(value, str) or len(value) <= 60 else f"a {len(value):,}-character text"
    return HyperSettingsError(f"Hyper-SD: {spec.name} must be {wanted}, got {type(value).__name__} {shown}")


def _number(spec: FieldSpec, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        example = "4" if spec.kind is int else "1.5"
        raise _type_error(
            spec, value, f"a JSON number such as {example}" + (" (not text)" if isinstance(value, str) else "")
        )
    number = float(value)
    if not math.isfinite(number):
        raise HyperSettingsError(f"Hyper-SD: {spec.name} must be a finite number, got {value!r}")
    return number


def _text(spec: FieldSpec, value: Any) -> str:
    if not isinstance(value, str):
        raise _type_error(spec, value, "a string")
    if spec.choices is not None:
        if value not in spec.choices:
            shown = f"{value!r:.60}" if len(value) <= 60 else f"of {len(value):,} characters"
            raise HyperSettingsError(f"Hyper-SD: unknown {spec.name} {shown}; choose one of: {', '.join(spec.choices)}")
        return value
    if spec.max_length is not None and len(value) > spec.max_length:
        raise HyperSettingsError(
            f"Hyper-SD: {spec.name} is {len(value):,} characters long; at most {spec.max_length:,}"
        )
    if not spec.internal and any(unicodedata.category(c) == "Cc" for c in value):
        raise HyperSettingsError(f"Hyper-SD: {spec.name} {value!r:.60} holds control characters (a line break?)")
    return value


def coerce_field(spec: FieldSpec, value: Any) -> Any:
    """Validate and convert one value for ``spec``; raises :class:`HyperSettingsError`."""
    if value is None:
        if spec.nullable:
            return None
        raise HyperSettingsError(
            f"Hyper-SD: {spec.name} must not be null (only {', '.join(NULLABLE)} may be); leave it out of the "
            f"dict to get its default, {spec.default!r}"
        )
    if spec.kind is bool:
        if not isinstance(value, bool):
            raise _type_error(spec, value, "true or false (a JSON boolean)")
        return value
    if spec.kind is str:
        return _text(spec, value)
    number = _number(spec, value)
    if spec.auto is not None and number == spec.auto:
        return None
    if spec.kind is int:
        if number != int(number):
            raise HyperSettingsError(f"Hyper-SD: {spec.name} must be a whole number, got {value!r}")
        number = int(number)
    if (spec.minimum is not None and number < spec.minimum) or (spec.maximum is not None and number > spec.maximum):
        auto = f" (or {spec.auto:g} / null: the preset's value)" if spec.auto is not None else ""
        raise HyperSettingsError(
            f"Hyper-SD: {spec.name} = {value!r} is out of range; allowed {spec.minimum:g}…{spec.maximum:g}{auto}"
        )
    return number


def from_api(args: Any) -> HyperSettings:
    """Settings from script args: a positional sequence (``FIELDS`` order, may be shorter), a dict
    keyed by field name, a sequence whose first item is such a dict (what ``process(p, *args)``
    receives for ``"args": [{...}]``; the rest are WebUI's UI defaults and are ignored), or HyperSettings."""
    if isinstance(args, HyperSettings):
        return args
    if (
        isinstance(args, Sequence)
        and not isinstance(args, (str, bytes))
        and len(args) >= 1
        and isinstance(args[0], (Mapping, HyperSettings))
    ):
        # WebUI's API (modules/api/api.py init_script_args) fills the positions a request leaves out with the
        # UI's default values, so a dict sent as ``"args": [{...}]`` arrives followed by those: ignore them.
        args = args[0]
    if isinstance(args, HyperSettings):
        return args
    if isinstance(args, Mapping):
        unknown = sorted(f"{k!r:.40}" for k in args if k not in FIELDS_BY_NAME)
        if unknown:
            raise HyperSettingsError(
                f"Hyper-SD: unknown argument(s) {', '.join(unknown)}; known: {', '.join(API_KEYS)}"
            )
        internal = [k for k in args if FIELDS_BY_NAME[k].internal]
        if internal:
            raise HyperSettingsError(
                f"Hyper-SD: {', '.join(internal)} is set by WebUI from the request's infotext; leave it out of the dict"
            )
        return HyperSettings(**dict(args))
    if isinstance(args, Sequence) and not isinstance(args, (str, bytes)):
        if len(args) > len(FIELDS):
            raise HyperSettingsError(
                f"Hyper-SD: {len(args)} positional arguments, at most {len(FIELDS)} ({', '.join(FIELD_NAMES)})"
            )
        return HyperSettings(**dict(zip(FIELD_NAMES, args, strict=False)))
    raise HyperSettingsError(
        f"Hyper-SD: script args must be a list (in the order {', '.join(FIELD_NAMES)}) or a dict, "
        f"got {type(args).__name__}"
    )
