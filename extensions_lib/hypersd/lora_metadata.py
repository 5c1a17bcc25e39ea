"""The ``hypersd_*`` metadata of a LoRA made by our training: written here, read here (one home for the keys).

The training engine writes these keys into the safetensors ``__metadata__`` (all values are strings, as
safetensors metadata requires); the quality report rewrites the recipe keys with the values it measured and
sets ``hypersd_measured``; the "Our distilled LoRA" preset reads them back.

=====================  =======================================================================
key                    meaning
=====================  =======================================================================
``hypersd_steps``      recommended steps, an int ≥ 1 (required: its presence marks the file)
``hypersd_sampler``    WebUI sampler name (e.g. ``"TCD"``, ``"Euler"``, ``"LCM"``); default TCD
``hypersd_scheduler``  WebUI schedule name or label (``"tcd"``/``"TCD"``, ``"trailing"``…);
                       default: the sampler's usual one (TCD → TCD, others → Trailing)
``hypersd_cfg``        CFG scale in WebUI's convention (1 = no guidance); default 1
``hypersd_gamma``      TCD gamma in [0, 1]; default 0.3; only meaningful with the TCD sampler
``hypersd_base``       ``"sd15"`` or ``"sdxl"``; fallback ``ss_base_model_version``
                       (``sdxl_*`` → sdxl, ``sd_v1*`` → sd15)
``hypersd_weight``     LoRA weight; default 1
``hypersd_measured``   ``"1"`` when the recipe keys hold the quality report's measured values
=====================  =======================================================================

Also written, for people and tools: ``hypersd_version``, ``hypersd_stages``, ``hypersd_steps_trained``,
``hypersd_kind``, and kohya's ``ss_*`` keys.  A file with none of the recipe keys is not one of ours
(:func:`read_recipe` returns None); a file with malformed values raises :class:`PresetMetadataError`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from hypersd.catalog import BASES
from hypersd.sampler_names import TCD_SAMPLER, TCD_SCHEDULE, TRAILING, sampler_name, schedule_label

PREFIX = "hypersd_"
#: the recipe keys, by the name the quality report's ``recommended`` dict (and :class:`Recipe`) uses
RECIPE_KEYS = {
    "steps": "hypersd_steps", "sampler": "hypersd_sampler", "scheduler": "hypersd_scheduler", "cfg": "hypersd_cfg",
    "gamma": "hypersd_gamma", "base": "hypersd_base", "weight": "hypersd_weight",
}  # fmt: skip
MEASURED_KEY = "hypersd_measured"
BASE_MODEL_VERSION = {"sd15": "sd_v1", "sdxl": "sdxl_base_v1-0"}  # kohya's ss_base_model_version


class PresetMetadataError(ValueError):
    """A LoRA's hypersd_* metadata is present but malformed."""


# ------------------------------------------------------------------------------------------------- writing


def lora_metadata(
    *,
    base: str,
    output_name: str,
    rank: int,
    alpha: float,
    stages: list[int],
    steps_trained: int,
    recommended_steps: int,
    gamma: float,
    sampler: str | None = None,
    scheduler: str | None = None,
    cfg_scale: float | None = None,
    kind: str | None = None,
    measured: bool = False,
) -> dict[str, str]:
    """The ss_* keys WebUI and kohya tools show, plus our hypersd_* keys (:func:`read_recipe` reads them)."""
    from hypersd import __version__

    meta = {
        "ss_base_model_version": BASE_MODEL_VERSION[base],
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(int(rank)),
        "ss_network_alpha": f"{float(alpha):g}",
        "ss_output_name": output_name,
        "hypersd_version": __version__,
        RECIPE_KEYS["base"]: base,
        "hypersd_stages": ",".join(str(k) for k in stages),
        "hypersd_steps_trained": str(int(steps_trained)),
        RECIPE_KEYS["steps"]: str(int(recommended_steps)),
        RECIPE_KEYS["sampler"]: sampler or TCD_SAMPLER,
        RECIPE_KEYS["scheduler"]: scheduler or TRAILING.label,
        RECIPE_KEYS["cfg"]: f"{float(1.0 if cfg_scale is None else cfg_scale):g}",
        RECIPE_KEYS["gamma"]: f"{float(gamma):g}",
        RECIPE_KEYS["weight"]: "1.0",
    }
    if kind is not None:
        meta["hypersd_kind"] = kind
    if measured:
        meta[MEASURED_KEY] = "1"
    return {k: str(v) for k, v in meta.items()}


def with_measured(metadata: Mapping[str, str], measured: Mapping[str, Any]) -> dict[str, str]:
    """``metadata`` with the measured ``steps``/``sampler``/``scheduler``/``cfg``/``gamma`` and the measured mark."""
    meta = dict(metadata)
    for name in ("steps", "sampler", "scheduler", "cfg", "gamma"):
        value = measured.get(name)
        if value is not None:
            meta[RECIPE_KEYS[name]] = f"{value:g}" if isinstance(value, float) else str(value)
    meta[MEASURED_KEY] = "1"
    return meta


# ------------------------------------------------------------------------------------------------- reading


def has_hypersd_metadata(metadata: Mapping[str, str]) -> bool:
    """A LoRA made by our training (its metadata carries ``hypersd_*`` keys)."""
    return any(k.startswith(PREFIX) for k in metadata)


def base_from_model_version(version: str | None) -> str | None:
    """``ss_base_model_version`` (kohya) → "sdxl" / "sd15" / "sd2" / "sd3" / None."""
    v = str(version or "").lower()
    for prefixes, base in (
        (("sdxl",), "sdxl"),
        (("sd_v1", "sd1"), "sd15"),
        (("sd_v2", "sd2"), "sd2"),
        (("sd3",), "sd3"),
    ):
        if v and v.startswith(prefixes):
            return base
    return None


def recipe_base(metadata: Mapping[str, str]) -> str | None:
    """The base model the metadata names (``hypersd_base``, as written), or None."""
    return str(metadata.get(RECIPE_KEYS["base"], "")).strip().lower() or None


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What a distilled LoRA recommends; None: not stated (the preset's default applies)."""

    steps: int
    sampler: str
    scheduler: str
    cfg: float | None
    gamma: float | None
    weight: float | None
    base: str | None  # hypersd_base, else from ss_base_model_version


def _number(metadata: Mapping[str, str], name: str, kind: type, lo: float, hi: float):
    key = RECIPE_KEYS[name]
    raw = metadata.get(key)
    if raw is None or str(raw).strip() == "":
        return None
    try:
        value = float(str(raw).strip())
    except ValueError:
        raise PresetMetadataError(f"Hyper-SD: LoRA metadata {key}={raw!r} is not a number") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise PresetMetadataError(f"Hyper-SD: LoRA metadata {key}={raw!r} is outside {lo}…{hi}")
    if kind is int:
        if value != int(value):
            raise PresetMetadataError(f"Hyper-SD: LoRA metadata {key}={raw!r} must be a whole number")
        return int(value)
    return value


def _name(metadata: Mapping[str, str], name: str, canonical, what: str) -> str | None:
    raw = metadata.get(RECIPE_KEYS[name])
    if not raw:
        return None
    found = canonical(str(raw))
    if found is None:
        raise PresetMetadataError(f"Hyper-SD: LoRA metadata {RECIPE_KEYS[name]}={raw!r} is not a known {what}")
    return found


def read_recipe(metadata: Mapping[str, str] | None) -> Recipe | None:
    """The recipe in a LoRA's metadata (contract: module docstring); None without any recipe key."""
    if not metadata or not any(k in metadata for k in RECIPE_KEYS.values()):
        return None
    steps = _number(metadata, "steps", int, 1, 100)
    if steps is None:
        raise PresetMetadataError("Hyper-SD: LoRA metadata has hypersd_* keys but no hypersd_steps")
    sampler = _name(metadata, "sampler", sampler_name, "sampler") or TCD_SAMPLER
    default_schedule = TCD_SCHEDULE.label if sampler == TCD_SAMPLER else TRAILING.label
    scheduler = _name(metadata, "scheduler", schedule_label, "schedule") or default_schedule
    base = recipe_base(metadata)
    if base is not None and base not in BASES:
        raise PresetMetadataError(f"Hyper-SD: LoRA metadata hypersd_base={base!r} must be one of {', '.join(BASES)}")
    return Recipe(
        steps=steps,
        sampler=sampler,
        scheduler=scheduler,
        cfg=_number(metadata, "cfg", float, 0.0, 30.0),
        gamma=_number(metadata, "gamma", float, 0.0, 1.0),
        weight=_number(metadata, "weight", float, 0.0, 2.0),
        base=base or base_from_model_version(metadata.get("ss_base_model_version")),
    )
