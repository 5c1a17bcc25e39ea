"""What the Hyper-SD accordion changes in a generation: a pure plan, then its application.

:func:`make_plan` takes the user's :class:`~hypersd.settings.HyperSettings`, the loaded model's
type, how to look LoRAs up (:class:`~hypersd.loras.LoraLookup`, or just the LoRAs WebUI lists), the batch's
prompts and the current generation values, and returns a :class:`Plan`: concrete sampler, schedule, steps,
CFG, gamma (eta), size, the LoRA tag to add, typed ``refusals`` and ``cautions``
(:mod:`hypersd.plan_outcomes`, whose messages are ``errors`` / ``warnings``) and a one-line ``status``.  It
reads nothing global.  Its steps, in order: the model type, prompt tags, the preset row, the LoRA, the
effective values, the checks, the size, hires fix / img2img.

:func:`hypersd.plan_apply.apply_plan` writes a plan onto a WebUI processing object (duck-typed; attribute names and
timing from WebUI v1.10.1 ``modules/processing.py``: ``scripts.process(p)`` runs after
``setup_prompts()`` expanded ``all_prompts``/``all_hr_prompts`` and before ``p.init()`` and
sampling, and the Lora extension reads its tags from ``p.all_prompts``/``p.all_hr_prompts`` per
batch).  With the accordion off, the plan is empty and nothing is touched.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from hypersd import loratags
from hypersd import plan_outcomes as out
from hypersd.catalog import FLUX_BASE
from hypersd.infotext import format_infotext
from hypersd.lora_metadata import PresetMetadataError
from hypersd.loras import LoraInfo, LoraLookup, Loras
from hypersd.plan_outcomes import CFG_WARN_ABOVE, Caution, Refusal, refused_status, render
from hypersd.presets import (
    ALL_PRESET_IDS,
    BASE_LABELS,
    NATIVE_SIZE,
    FluxPreset,
    HyperPreset,
    get_preset,
    model_family,
    preset_from_metadata,
    preset_with_sampler,
    rows_for,
    strip_extension,
)
from hypersd.prompt_tags import TagSettings, settings_from_prompt_tags
from hypersd.sampler_names import TCD_SAMPLER
from hypersd.settings import HyperSettings

#: A size is "far from native" when its pixel count is outside this factor of the native one (our choice:
#: SDXL's training buckets stay within about ±40 % of 1 MP, so ×2 / ÷2 is clearly outside).
SIZE_FAR_FACTOR = 2.0
#: Denoising further than this from the preset's advice is warned about (our choice).
DENOISE_TOLERANCE = 0.25


@dataclasses.dataclass(frozen=True)
class CurrentValues:
    """The generation values before Hyper-SD changes them."""

    width: int = 512
    height: int = 512
    steps: int = 20
    cfg_scale: float = 7.0
    enable_hr: bool = False
    is_img2img: bool = False
    denoising_strength: float | None = None
    hr_second_pass_steps: int = 0
    img2img_fix_steps: bool = False  # WebUI option "img2img_fix_steps"
    model_name: str | None = None  # loaded checkpoint file name, for presets that need a specific model
    unet_name: str | None = None  # loaded "SD Unet", if any

    @classmethod
    def from_processing(cls, p: Any, **extra: Any) -> CurrentValues:
        """Read a WebUI processing object (duck-typed); ``extra`` gives what ``p`` lacks (model name…)."""
        values = dict(
            width=int(getattr(p, "width", 512)),
            height=int(getattr(p, "height", 512)),
            steps=int(getattr(p, "steps", 20)),
            cfg_scale=float(getattr(p, "cfg_scale", 7.0)),
            enable_hr=bool(getattr(p, "enable_hr", False)),
            is_img2img=getattr(p, "init_images", None) is not None,
            denoising_strength=getattr(p, "denoising_strength", None),
            hr_second_pass_steps=int(getattr(p, "hr_second_pass_steps", 0) or 0),
        )
        values.update(extra)
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class Plan:
    """The concrete changes; None fields are left as they are."""

    enabled: bool
    settings: HyperSettings  # effective settings (after prompt tags), concrete values filled in
    preset: HyperPreset | None = None
    sampler_name: str | None = None
    scheduler: str | None = None  # WebUI schedule label
    steps: int | None = None
    cfg_scale: float | None = None
    eta: float | None = None  # TCD gamma (p.eta feeds the TCD sampler's gamma)
    distilled_cfg_scale: float | None = None  # FLUX.1-dev's guidance input (Forge's p.distilled_cfg_scale)
    width: int | None = None
    height: int | None = None
    lora_name: str | None = None  # the available name the tag uses
    lora_weight: float | None = None
    lora_aliases: tuple[str, ...] = ()  # other names of the same file: their tags are replaced, not doubled
    hr_second_pass_steps: int | None = None
    reset_hr_sampler: bool = False  # hires fix uses the same sampler and schedule
    size_fix: tuple[int, int] | None = None  # the one-click fix of a size warning
    refusals: tuple[Refusal, ...] = ()
    cautions: tuple[Caution, ...] = ()
    notes: tuple[str, ...] = ()
    status: str = ""
    infotext: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return not self.refusals

    @property
    def errors(self) -> tuple[str, ...]:
        return tuple(render(r) for r in self.refusals)

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(render(c) for c in self.cautions)

    @property
    def lora_tag(self) -> str | None:
        return loratags.lora_tag(self.lora_name, self.lora_weight) if self.lora_name else None

    @property
    def extra_generation_params(self) -> dict[str, str]:
        return dict(self.infotext)


def normalize_model_base(model_base: str | None) -> str | None:
    """Model type: "SD1.5", "sd1", "sd15" → "sd15"; "SDXL" → "sdxl"; "sd2", "sd3"; "FLUX.1-dev" → "flux-dev"; anything else
    → None."""
    key = str(model_base or "").strip().lower().replace(".", "").replace("_", "").replace("-", "").replace(" ", "")
    return {
        "sd1": "sd15",
        "sd15": "sd15",
        "sdxl": "sdxl",
        "sd2": "sd2",
        "sd21": "sd2",
        "sd3": "sd3",
        "flux1dev": FLUX_BASE,
        "fluxdev": FLUX_BASE,
    }.get(key)  # fmt: skip  ("flux" alone: dev or schnell?)


def fit_size(width: int, height: int, native: tuple[int, int], multiple: int = 64) -> tuple[int, int]:
    """The size with ``width:height``'s aspect ratio and the native pixel count, in multiples of ``multiple``."""
    area = native[0] * native[1]
    aspect = width / height
    w = max(multiple, round(math.sqrt(area * aspect) / multiple) * multiple)
    h = max(multiple, round(math.sqrt(area / aspect) / multiple) * multiple)
    return int(w), int(h)


# --------------------------------------------------------------------------------------------- make_plan steps


class _Refused(Exception):
    """A step refused the plan (internal: :func:`make_plan` turns it into a refused :class:`Plan`)."""

    def __init__(self, *refusals: Refusal, preset: HyperPreset | None = None):
        super().__init__(refusals)
        self.refusals, self.preset = refusals, preset


def _model_type(model_base: str | None) -> str:
    base = normalize_model_base(model_base)
    if base is None:
        raise _Refused(out.UnknownModelType(model_base))
    if base not in NATIVE_SIZE:  # SD2 (v-prediction) and SD3 (flow matching) would need their own recipes
        raise _Refused(out.UnsupportedModel(base))
    return base


def _from_tags(settings: HyperSettings, prompts: Sequence[str], base: str) -> TagSettings:
    from_tags = settings_from_prompt_tags(settings, prompts)
    if from_tags.refusals:
        raise _Refused(*from_tags.refusals)
    for tag in from_tags.tags:
        if tag.known.base not in (base, "any"):
            raise _Refused(out.TagForOtherModel(tag.text, tag.known.base, base))
    return from_tags


def _distilled_row(settings: HyperSettings, base: str, lookup: LoraLookup, notes: list[str]):
    """The "Our distilled LoRA" row, from the picked (or newest) distilled LoRA's metadata, and that LoRA."""
    if settings.lora:
        info = lookup.find(settings.lora)
        if info is None:
            raise _Refused(out.LoraNotListed(settings.lora))
    else:
        info = lookup.newest_distilled(base)
        if info is None:
            raise _Refused(out.NoDistilledLora(base))
        notes.append(f"using the newest distilled LoRA, {info.name} (pick another in the LoRA field)")
    try:
        row = preset_from_metadata(info.metadata, info.name)
    except PresetMetadataError as error:
        raise _Refused(out.LoraMetadataInvalid(str(error), info.name)) from None
    if row is None:
        raise _Refused(out.LoraWithoutRecipe(info.name))
    if row.size == (0, 0):
        row = dataclasses.replace(row, size=NATIVE_SIZE[base])
    return row, info


def _preset_row(settings: HyperSettings, base: str, lookup: LoraLookup, notes: list[str]):
    """The preset's row for this model type with the sampler choice applied, and the LoRA it already fixed."""
    info = None
    rows = rows_for(settings.preset)
    if rows and all(model_family(r.base) != model_family(base) for r in rows):
        raise _Refused(out.PresetForOtherModelFamily(rows[0].title, rows[0].base, base))
    if settings.preset == "distilled":
        row, info = _distilled_row(settings, base, lookup, notes)
    else:
        if not rows:
            raise _Refused(out.PresetUnknown(settings.preset, ALL_PRESET_IDS))
        if not any(r.base in (base, "any") for r in rows):
            raise _Refused(out.PresetNotForModel(settings.preset, tuple(r.base for r in rows), base))
        row = get_preset(settings.preset, base)
    return preset_with_sampler(row, settings.sampler), info


def _lora(row: HyperPreset, base: str, info: LoraInfo | None, lookup: LoraLookup) -> LoraInfo | None:
    """The LoRA file the row needs, found once through the lookup; refuses a missing or mismatched one."""
    refusals: list[Refusal] = []
    if row.lora_file is not None and info is None:
        info = lookup.find(row.lora_file, row.catalog_entry)
        if info is None:
            refusals.append(out.MissingLora(row, base, row.catalog_entry))
    lora_base = row.base if row.base != "any" else None
    if info is not None:
        lora_base = info.model_base or lora_base
    if lora_base is not None and lora_base != base:
        refusals.append(out.LoraForOtherModel(info.name if info else row.lora_file, lora_base, base))
    if refusals:
        raise _Refused(*refusals, preset=row)
    return info


@dataclasses.dataclass(frozen=True)
class _Values:
    steps: int
    cfg: float
    weight: float
    gamma: float | None


def _values(settings: HyperSettings, row: HyperPreset, notes: list[str]) -> _Values:
    """The user's values where set, else the row's; gamma only for TCD."""
    gamma = None
    if row.sampler == TCD_SAMPLER:
        gamma = settings.gamma if settings.gamma is not None else row.gamma
    elif settings.gamma is not None:
        notes.append(f"gamma is ignored: {row.sampler} is not TCD")
    pick = lambda mine, default: default if mine is None else mine  # noqa: E731
    return _Values(
        pick(settings.steps, row.steps), pick(settings.cfg, row.cfg), pick(settings.weight, row.weight), gamma
    )


def _loaded_model_caution(row: HyperPreset, current: CurrentValues) -> Caution | None:
    loaded = tuple(n for n in (current.model_name, current.unet_name) if n)
    wanted = strip_extension(row.model_file or "").lower()
    if row.model_file and loaded and not any(wanted in strip_extension(str(n)).lower() for n in loaded):
        return out.ModelNotLoaded(row, loaded)
    return None


def _value_cautions(row: HyperPreset, v: _Values, current: CurrentValues) -> list[Caution]:
    """The checks of the effective values against the row's ranges, as a table: (warn when, caution)."""
    inside = lambda value, lo_hi: lo_hi[0] <= value <= lo_hi[1]  # noqa: E731
    burns = not row.uses_cfg and v.cfg > CFG_WARN_ABOVE
    checks = (
        (not inside(v.steps, row.steps_range), lambda: out.StepsOutsideRange(v.steps, row)),
        (burns, lambda: out.CfgBurns(v.cfg, row)),
        (not burns and not inside(v.cfg, row.cfg_range), lambda: out.CfgOutsideRange(v.cfg, row)),
        (row.lora_file is not None and not inside(v.weight, row.weight_range), lambda: out.WeightOutsideRange(v.weight, row)),
    )  # fmt: skip
    cautions = [make() for warn, make in checks if warn]
    loaded = _loaded_model_caution(row, current)
    return cautions + ([loaded] if loaded else [])


def _size(row: HyperPreset, settings: HyperSettings, current: CurrentValues):
    """(new size or None, the one-click size fix or None, cautions)."""
    native = row.size
    if native == (0, 0) or current.width <= 0 or current.height <= 0:
        return None, None, []
    size = (current.width, current.height)
    fitted = fit_size(*size, native)
    if settings.apply_size:
        return (fitted if fitted != size else None), None, []
    ratio = (size[0] * size[1]) / (native[0] * native[1])
    if 1 / SIZE_FAR_FACTOR <= ratio <= SIZE_FAR_FACTOR:
        return None, None, []
    return None, fitted, [out.SizeFarFromNative(size, row, fitted)]


def _hires(row: HyperPreset, settings: HyperSettings, current: CurrentValues, steps: int):
    """(hires second-pass steps or None, reset the hires sampler?, cautions) for hires fix and img2img."""
    hr_steps, reset, cautions = None, False, []
    too_many = current.hr_second_pass_steps > row.steps_range[1]
    if current.enable_hr and not current.is_img2img:
        if settings.fix_hires:
            reset, hr_steps = True, (row.hires_steps if too_many else None)
        elif too_many:
            cautions.append(out.HiresRunsManySteps(current.hr_second_pass_steps, row))
    denoise = current.denoising_strength
    if denoise is not None and (current.enable_hr or current.is_img2img):
        if abs(denoise - row.hires_denoise) > DENOISE_TOLERANCE:
            cautions.append(out.DenoiseFarFromAdvice("img2img" if current.is_img2img else "hires fix", denoise, row))
        if current.is_img2img and not current.img2img_fix_steps and denoise * steps < 1:
            cautions.append(out.OnlyLastStepRuns(steps, denoise))
    return hr_steps, reset, cautions


# --------------------------------------------------------------------------------------------- make_plan


def make_plan(
    settings: HyperSettings,
    model_base: str | None,
    available_loras: LoraLookup | Loras,
    prompts: Sequence[str],
    current: CurrentValues,
    hr_prompts: Sequence[str] | None = None,
) -> Plan:
    """The changes for one generation (see the module docstring).  Never raises for user input.

    ``available_loras`` is a :class:`~hypersd.loras.LoraLookup` (the adapter's also lists the folder again and
    recognises catalog files by hash, once) or just the LoRAs WebUI lists.
    """
    if not settings.enabled:
        return Plan(enabled=False, settings=settings)
    notes: list[str] = []
    try:
        base = _model_type(model_base)
        from_tags = _from_tags(settings, [*prompts, *(hr_prompts or ())], base)
        settings = from_tags.settings
        notes += from_tags.notes
        lookup = LoraLookup.of(available_loras)
        row, info = _preset_row(settings, base, lookup, notes)
        info = _lora(row, base, info, lookup)
    except _Refused as refused:
        return Plan(
            enabled=True, settings=settings, preset=refused.preset, refusals=refused.refusals, notes=tuple(notes),
            status=refused_status(refused.refusals),
        )  # fmt: skip
    values = _values(settings, row, notes)
    width_height, size_fix, size_cautions = _size(row, settings, current)
    hr_steps, reset_hr, hr_cautions = _hires(row, settings, current, values.steps)
    effective = settings.replace(steps=values.steps, cfg=values.cfg, gamma=values.gamma, weight=values.weight)
    lora_name = info.name if info is not None else None
    width, height = width_height or (None, None)
    aliases = (info.alias if info else "", row.lora_stem or "", settings.lora)
    return Plan(
        enabled=True,
        settings=effective,
        preset=row,
        sampler_name=row.sampler,
        scheduler=row.scheduler,
        steps=values.steps,
        cfg_scale=values.cfg,
        eta=values.gamma,
        distilled_cfg_scale=row.guidance if isinstance(row, FluxPreset) else None,
        width=width,
        height=height,
        lora_name=lora_name,
        lora_weight=values.weight if lora_name else None,
        lora_aliases=tuple(dict.fromkeys(n for n in aliases if n and n != lora_name)),
        hr_second_pass_steps=hr_steps,
        reset_hr_sampler=reset_hr,
        size_fix=size_fix,
        cautions=(*_value_cautions(row, values, current), *size_cautions, *hr_cautions),
        notes=tuple(notes),
        status=_status_line(row, base, values, lora_name, width, height, hr_steps, reset_hr),
        infotext=tuple(format_infotext(effective).items()),
    )


def _status_line(row, base, values: _Values, lora_name, width, height, hr_steps, reset_hr) -> str:
    steps, cfg, gamma = values.steps, values.cfg, values.gamma
    parts = [f"{row.sampler} + {row.scheduler}", f"{steps} step{'s' if steps != 1 else ''}", f"CFG {cfg:g}"]
    if gamma is not None:
        parts.append(f"gamma {gamma:g}")
    if lora_name:
        parts.append(loratags.lora_tag(lora_name, values.weight))
    if width is not None:
        parts.append(f"size {width}×{height}")
    if hr_steps is not None:
        parts.append(f"hires {hr_steps} steps")
    if reset_hr:
        parts.append("hires same sampler")
    if isinstance(row, FluxPreset):
        parts.append(f"distilled guidance {row.guidance:g}")
    return f"Hyper-SD: {row.title} ({BASE_LABELS.get(base, base)}) — " + ", ".join(parts)
