"""What the Hyper-SD accordion changes in a generation: a pure plan, then its application.

:func:`make_plan` takes the user's :class:`~hypersd.settings.HyperSettings`, the loaded model's
type, the LoRAs WebUI knows, the batch's prompts and the current generation values, and returns a
:class:`Plan`: concrete sampler, schedule, steps, CFG, gamma (eta), size, the LoRA tag to add,
refusals (``errors``), ``warnings`` and a one-line ``status``.  It reads nothing global.

:func:`apply_plan` writes a plan onto a WebUI processing object (duck-typed; attribute names and
timing from WebUI v1.10.1 ``modules/processing.py``: ``scripts.process(p)`` runs after
``setup_prompts()`` expanded ``all_prompts``/``all_hr_prompts`` and before ``p.init()`` and
sampling, and the Lora extension reads its tags from ``p.all_prompts``/``p.all_hr_prompts`` per
batch).  With the accordion off, the plan is empty and nothing is touched.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hypersd import loratags
from hypersd.infotext import format_infotext
from hypersd.presets import (
    NATIVE_SIZE,
    HyperPreset,
    PresetMetadataError,
    base_from_model_version,
    get_preset,
    preset_from_metadata,
    preset_with_sampler,
    strip_extension,
)
from hypersd.settings import HyperSettings, HyperSettingsError

BASE_LABELS = {"sd15": "SD1.5", "sdxl": "SDXL", "sd2": "SD2", "sd3": "SD3"}
#: A size is "far from native" when its pixel count is outside this factor of the native one (our choice:
#: SDXL's training buckets stay within about ±40 % of 1 MP, so ×2 / ÷2 is clearly outside).
SIZE_FAR_FACTOR = 2.0
#: CFG above this with a LoRA distilled without guidance burns the image (seed notes: CFG 2 still fine).
CFG_WARN_ABOVE = 2.0
#: Denoising further than this from the preset's advice is warned about (our choice).
DENOISE_TOLERANCE = 0.25


class HyperPlanError(RuntimeError):
    """Raised by :func:`apply_plan` for a plan with errors: generation must not start."""


@dataclasses.dataclass(frozen=True)
class LoraInfo:
    """One LoRA WebUI knows (from the Lora extension's ``available_networks``)."""

    name: str  # the file name without extension: what <lora:NAME> uses
    alias: str = ""  # ss_output_name, also accepted by WebUI in tags
    path: str = ""
    base: str | None = None  # "sd15" / "sdxl" / "sd2" / None (unknown); None: read ss_base_model_version
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)
    hash: str = ""  # WebUI's LoRA hash (sha256 after the safetensors header, "addnet"), full or short
    sha256: str = ""  # the whole file's sha256, when known
    mtime: float = 0.0  # file modification time (newest distilled LoRA first); 0 when unknown

    @property
    def model_base(self) -> str | None:
        return self.base or base_from_model_version(self.metadata.get("ss_base_model_version"))

    @classmethod
    def from_network_on_disk(cls, net: Any, sha256: str = "") -> LoraInfo:
        """From the Lora extension's ``NetworkOnDisk`` (extensions-builtin/Lora/network.py v1.10.1), duck-typed:
        ``name``, ``alias``, ``filename``, ``metadata``, ``hash`` and ``sd_version`` (an enum SD1/SD2/SDXL/Unknown,
        detected from ``ss_base_model_version`` / ``ss_v2``; "SD1" there means "has metadata", so it is trusted only
        when ``ss_base_model_version`` says so too)."""
        metadata = dict(getattr(net, "metadata", None) or {})
        version = getattr(getattr(net, "sd_version", None), "name", "")
        base = {"SDXL": "sdxl", "SD2": "sd2"}.get(version)
        try:
            mtime = os.path.getmtime(getattr(net, "filename", "") or "")
        except OSError:
            mtime = 0.0
        return cls(
            name=net.name,
            alias=getattr(net, "alias", "") or "",
            path=getattr(net, "filename", "") or "",
            base=base,
            metadata=metadata,
            hash=getattr(net, "hash", "") or "",
            sha256=sha256,
            mtime=mtime,
        )


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
    width: int | None = None
    height: int | None = None
    lora_name: str | None = None  # the available name the tag uses
    lora_weight: float | None = None
    lora_aliases: tuple[str, ...] = ()  # other names of the same file: their tags are replaced, not doubled
    hr_second_pass_steps: int | None = None
    reset_hr_sampler: bool = False  # hires fix uses the same sampler and schedule
    size_fix: tuple[int, int] | None = None  # the one-click fix of a size warning
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    status: str = ""
    infotext: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def lora_tag(self) -> str | None:
        return loratags.lora_tag(self.lora_name, self.lora_weight) if self.lora_name else None

    @property
    def extra_generation_params(self) -> dict[str, str]:
        return dict(self.infotext)


# --------------------------------------------------------------------------------------------- helpers


def normalize_model_base(model_base: str | None) -> str | None:
    """Model type: "SD1.5", "sd1", "sd15" → "sd15"; "SDXL" → "sdxl"; "sd2", "sd3"; anything else → None."""
    key = str(model_base or "").strip().lower().replace(".", "").replace("_", "").replace("-", "").replace(" ", "")
    return {"sd1": "sd15", "sd15": "sd15", "sdxl": "sdxl", "sd2": "sd2", "sd21": "sd2", "sd3": "sd3"}.get(key)


def fit_size(width: int, height: int, native: tuple[int, int], multiple: int = 64) -> tuple[int, int]:
    """The size with ``width:height``'s aspect ratio and the native pixel count, in multiples of ``multiple``."""
    area = native[0] * native[1]
    aspect = width / height
    w = max(multiple, round(math.sqrt(area * aspect) / multiple) * multiple)
    h = max(multiple, round(math.sqrt(area / aspect) / multiple) * multiple)
    return int(w), int(h)


def _loras(available: Mapping[str, LoraInfo] | Iterable[LoraInfo] | None) -> list[LoraInfo]:
    if available is None:
        return []
    return list(available.values()) if isinstance(available, Mapping) else list(available)


def has_hypersd_metadata(metadata: Mapping[str, str]) -> bool:
    """A LoRA made by our training (its metadata carries ``hypersd_*`` keys)."""
    return any(k.startswith("hypersd_") for k in metadata)


def newest_distilled_lora(
    available: Mapping[str, LoraInfo] | Iterable[LoraInfo] | None, base: str | None
) -> LoraInfo | None:
    """The most recently written LoRA with ``hypersd_*`` metadata for ``base`` (whole runs before stage files)."""
    candidates = []
    for info in _loras(available):
        meta = info.metadata
        if not has_hypersd_metadata(meta):
            continue
        lora_base = str(meta.get("hypersd_base", "")).lower() or info.model_base
        if base is not None and lora_base not in (None, "", base):
            continue
        stage_file = re.search(r"-\d+step$", info.name) is not None
        candidates.append((not stage_file, info.mtime, info.name, info))
    return max(candidates, key=lambda c: c[:3])[3] if candidates else None


def find_lora(
    available: Mapping[str, LoraInfo] | Iterable[LoraInfo] | None,
    wanted: str,
    known_hashes: Iterable[str] = (),
) -> LoraInfo | None:
    """The available LoRA for ``wanted`` (a file or tag name): by exact name or alias, then
    case-insensitively, then (for our known accelerator files) by any known alias, then by hash
    (``known_hashes``: sha256 / addnet hashes of the wanted file; a LoRA's hash may be a prefix)."""
    loras = _loras(available)
    stem = strip_extension(wanted)
    for match in (
        lambda i: stem in (i.name, i.alias),
        lambda i: stem.lower() in (i.name.lower(), i.alias.lower()),
    ):
        found = next((i for i in loras if match(i)), None)
        if found:
            return found
    known = loratags.known_lora(stem)
    if known is not None:
        found = next(
            (i for i in loras if known in (loratags.known_lora(i.name), loratags.known_lora(i.alias or i.name))),
            None,
        )
        if found:
            return found
    hashes = [h.lower() for h in known_hashes if h]
    for info in loras:
        for mine in (info.sha256.lower(), info.hash.lower()):
            if len(mine) >= 10 and any(h.startswith(mine) or mine.startswith(h) for h in hashes):
                return info
    return None


@dataclasses.dataclass(frozen=True)
class TagSettings:
    settings: HyperSettings
    notes: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    tags: tuple[loratags.FoundTag, ...] = ()


def settings_from_prompt_tags(settings: HyperSettings, prompts: Iterable[str]) -> TagSettings:
    """A hand-typed accelerator tag (any official name or alias, any weight) configures like its button.

    The tag wins over the selected preset: if its file is not the preset's, the preset becomes the first
    one of the table using that file, and steps/CFG/gamma go back to that preset's recommendation.  Its
    weight becomes the LoRA weight.  Two different accelerator files in the prompts are an error.
    """
    if not settings.enabled:
        return TagSettings(settings)
    tags = tuple(t for prompt in prompts for t in loratags.find_hyper_tags(prompt or ""))
    if not tags:
        return TagSettings(settings)
    files = list(dict.fromkeys(t.known.file for t in tags))
    if len(files) > 1:
        shown = ", ".join(dict.fromkeys(t.text for t in tags))
        return TagSettings(
            settings,
            errors=(f"Hyper-SD: the prompt has tags of several accelerator LoRAs ({shown}); keep only one",),
            tags=tags,
        )
    first = tags[0]
    known = first.known
    notes = []
    if first.weight is None:
        return TagSettings(settings, errors=(f"Hyper-SD: the weight in {first.text} is not a number",), tags=tags)
    if len({(t.te_weight, t.unet_weight) for t in tags}) > 1:
        notes.append(f"the prompts give {known.stem} different weights; using {first.text}'s")
    if first.te_weight != first.unet_weight:
        notes.append(f"{first.text}: separate text-encoder/UNet weights; Hyper-SD uses the UNet's ({first.weight:g})")
    changes: dict[str, Any] = {"weight": first.weight}
    if settings.preset not in known.preset_ids:
        changes.update(preset=known.preset_ids[0], steps=None, cfg=None, gamma=None)
    try:
        new = settings.replace(**changes)
    except HyperSettingsError as error:
        return TagSettings(settings, errors=(f"{error} (from the prompt tag {first.text})",), tags=tags)
    notes.insert(0, f"from the prompt tag {first.text}: preset {new.preset}, weight {first.weight:g}")
    return TagSettings(new, notes=tuple(notes), tags=tags)


def _missing_lora_message(preset: HyperPreset, base: str) -> str:
    origin = ""
    if preset.hub_repo:
        renamed = "" if preset.hub_file == preset.lora_file else f", saved as {preset.lora_file}"
        origin = f" Download {preset.hub_repo} → {preset.hub_file}{renamed} into WebUI's models/Lora folder"
        origin += " (or in WebUI's 'Hyper-SD Models' tab, which verifies it and refreshes the LoRA list)."
    return (
        f"Hyper-SD: the preset '{preset.title}' ({BASE_LABELS.get(base, base)}) needs the LoRA "
        f"{preset.lora_file}, which is not in your Lora folder (looked for it by name, alias and hash).{origin}"
    )


def _disabled(settings: HyperSettings) -> Plan:
    return Plan(enabled=False, settings=settings)


def _refused(settings: HyperSettings, errors: Sequence[str], preset: HyperPreset | None = None, **kw: Any) -> Plan:
    return Plan(
        enabled=True,
        settings=settings,
        preset=preset,
        errors=tuple(errors),
        status="Hyper-SD: not applied: " + errors[0].removeprefix("Hyper-SD: "),
        **kw,
    )


def _range_text(lo: float, hi: float) -> str:
    return f"{lo:g}" if lo == hi else f"{lo:g}–{hi:g}"


# --------------------------------------------------------------------------------------------- make_plan


def make_plan(
    settings: HyperSettings,
    model_base: str | None,
    available_loras: Mapping[str, LoraInfo] | Iterable[LoraInfo] | None,
    prompts: Sequence[str],
    current: CurrentValues,
    hr_prompts: Sequence[str] | None = None,
    known_hashes: Mapping[str, Iterable[str]] | None = None,
) -> Plan:
    """The changes for one generation (see the module docstring).  Never raises for user input.

    ``known_hashes`` maps a local file name (``Hyper-SDXL-4steps-lora.safetensors``) to hashes of that
    file (from the catalog), so a renamed copy is found too.
    """
    if not settings.enabled:
        return _disabled(settings)
    base = normalize_model_base(model_base)
    if base is None:
        return _refused(
            settings,
            [f"Hyper-SD: the loaded model's type ({model_base!r}) is unknown; load an SD1.5 or SDXL checkpoint"],
        )
    if base not in NATIVE_SIZE:
        # SD2 (v-prediction) and SD3 (flow matching) would need their own recipes; none is in the table.
        return _refused(
            settings, [f"Hyper-SD: the presets are for SD1.5 and SDXL models; the loaded model is {BASE_LABELS[base]}"]
        )

    all_prompts = [*prompts, *(hr_prompts or ())]
    from_tags = settings_from_prompt_tags(settings, all_prompts)
    settings, notes = from_tags.settings, list(from_tags.notes)
    if from_tags.errors:
        return _refused(settings, from_tags.errors, notes=tuple(notes))
    for tag in from_tags.tags:
        if tag.known.base not in (base, "any"):
            return _refused(
                settings,
                [
                    f"Hyper-SD: {tag.text} is a {BASE_LABELS[tag.known.base]} LoRA but the loaded model is "
                    f"{BASE_LABELS[base]}; remove the tag or load a {BASE_LABELS[tag.known.base]} model"
                ],
                notes=tuple(notes),
            )

    # --- the preset row
    lora_info: LoraInfo | None = None
    if settings.preset == "distilled":
        if settings.lora:
            lora_info = find_lora(available_loras, settings.lora)
        else:
            lora_info = newest_distilled_lora(available_loras, base)
            if lora_info is None:
                return _refused(
                    settings,
                    [
                        "Hyper-SD: no distilled LoRA for this model type in your Lora folder: train one in the "
                        "Hyper-SD Train tab, or pick a LoRA in the accordion's LoRA field"
                    ],
                )
            notes.append(f"using the newest distilled LoRA, {lora_info.name} (pick another in the LoRA field)")
        if lora_info is None:
            return _refused(settings, [f"Hyper-SD: the LoRA {settings.lora!r} is not in your Lora folder"])
        try:
            row = preset_from_metadata(lora_info.metadata, lora_info.name)
        except PresetMetadataError as error:
            return _refused(settings, [str(error) + f" (LoRA {lora_info.name})"])
        if row is None:
            return _refused(
                settings,
                [
                    f"Hyper-SD: the LoRA {lora_info.name} carries no hypersd_* recommendations in its metadata; "
                    "pick another preset or a LoRA made by the Hyper-SD training"
                ],
            )
        if row.size == (0, 0) and base in NATIVE_SIZE:
            row = dataclasses.replace(row, size=NATIVE_SIZE[base])
    else:
        try:
            row = get_preset(settings.preset, base)
        except KeyError as error:
            return _refused(
                settings, [str(error.args[0]) + "; load a model of the preset's type or pick another preset"]
            )
    row = preset_with_sampler(row, settings.sampler)

    errors: list[str] = []
    warnings: list[str] = []

    # --- the LoRA
    if row.lora_file is not None and lora_info is None:
        hashes = (known_hashes or {}).get(row.lora_file, ())
        lora_info = find_lora(available_loras, row.lora_file, hashes)
        if lora_info is None:
            errors.append(_missing_lora_message(row, base))
    lora_base = row.base if row.base != "any" else None
    if lora_info is not None:
        lora_base = lora_info.model_base or lora_base
    if lora_base is not None and lora_base != base:
        name = lora_info.name if lora_info else row.lora_file
        errors.append(
            f"Hyper-SD: the LoRA {name} is for {BASE_LABELS.get(lora_base, lora_base)} but the loaded model is "
            f"{BASE_LABELS[base]}; load a {BASE_LABELS.get(lora_base, lora_base)} model or pick the matching preset"
        )
    if errors:
        return _refused(settings, errors, preset=row, notes=tuple(notes))

    # --- concrete values
    steps = settings.steps if settings.steps is not None else row.steps
    cfg = settings.cfg if settings.cfg is not None else row.cfg
    weight = settings.weight if settings.weight is not None else row.weight
    gamma = None
    if row.sampler == "TCD":
        gamma = settings.gamma if settings.gamma is not None else row.gamma
    elif settings.gamma is not None:
        notes.append(f"gamma is ignored: {row.sampler} is not TCD")

    if not row.steps_range[0] <= steps <= row.steps_range[1]:
        warnings.append(f"Hyper-SD: {steps} steps; {row.title} is made for {_range_text(*row.steps_range)} steps")
    if not row.uses_cfg and cfg > CFG_WARN_ABOVE:
        warnings.append(
            f"Hyper-SD: CFG {cfg:g} with {row.title}, which was distilled without guidance: images burn "
            f"above ~{CFG_WARN_ABOVE:g}; use CFG {_range_text(*row.cfg_range)} or a CFG-preserving preset"
        )
    elif not row.cfg_range[0] <= cfg <= row.cfg_range[1]:
        warnings.append(f"Hyper-SD: CFG {cfg:g}; {row.title} is made for CFG {_range_text(*row.cfg_range)}")
    if row.lora_file is not None and not row.weight_range[0] <= weight <= row.weight_range[1]:
        warnings.append(f"Hyper-SD: LoRA weight {weight:g}; usual for {row.title} is {_range_text(*row.weight_range)}")

    if row.model_file is not None:
        loaded = [n for n in (current.model_name, current.unet_name) if n]
        wanted = strip_extension(row.model_file).lower()
        if loaded and not any(wanted in strip_extension(str(n)).lower() for n in loaded):
            warnings.append(
                f"Hyper-SD: {row.title} expects {row.model_file} to be loaded ({row.note}); loaded: {', '.join(loaded)}"
            )

    # --- size
    width = height = None
    size_fix = None
    native = row.size
    if native != (0, 0) and current.width > 0 and current.height > 0:
        fitted = fit_size(current.width, current.height, native)
        ratio = (current.width * current.height) / (native[0] * native[1])
        if settings.apply_size:
            if fitted != (current.width, current.height):
                width, height = fitted
        elif not 1 / SIZE_FAR_FACTOR <= ratio <= SIZE_FAR_FACTOR:
            size_fix = fitted
            warnings.append(
                f"Hyper-SD: {current.width}×{current.height} is far from {row.title}'s native "
                f"{native[0]}×{native[1]} ({native[0] * native[1] / 1e6:.2f} MP); use {fitted[0]}×{fitted[1]}"
            )

    # --- hires fix and img2img
    hr_steps = None
    reset_hr_sampler = False
    if current.enable_hr and not current.is_img2img:
        if settings.fix_hires:
            reset_hr_sampler = True
            if current.hr_second_pass_steps > row.steps_range[1]:
                hr_steps = row.hires_steps
        elif current.hr_second_pass_steps > row.steps_range[1]:
            warnings.append(
                f"Hyper-SD: hires fix runs {current.hr_second_pass_steps} steps with its own settings; "
                f"{row.title} needs few ({row.hires_steps}): turn on 'Keep hires fix few-step'"
            )
    denoise = current.denoising_strength
    if denoise is not None and (current.enable_hr or current.is_img2img):
        where = "img2img" if current.is_img2img else "hires fix"
        if abs(denoise - row.hires_denoise) > DENOISE_TOLERANCE:
            warnings.append(
                f"Hyper-SD: {where} denoising {denoise:g}; few-step models do best near {row.hires_denoise:g}"
            )
        if current.is_img2img and not current.img2img_fix_steps and denoise * steps < 1:
            warnings.append(
                f"Hyper-SD: img2img with {steps} steps at denoising {denoise:g} runs only the last step; "
                f"raise denoising to at least {1 / steps:.2g}"
            )

    effective = settings.replace(steps=steps, cfg=cfg, gamma=gamma, weight=weight)
    lora_name = lora_info.name if lora_info is not None else None
    aliases = tuple(
        dict.fromkeys(
            n
            for n in (lora_info.alias if lora_info else "", row.lora_stem or "", settings.lora)
            if n and n != lora_name
        )
    )
    status = _status_line(row, base, steps, cfg, gamma, lora_name, weight, width, height, hr_steps, reset_hr_sampler)
    return Plan(
        enabled=True,
        settings=effective,
        preset=row,
        sampler_name=row.sampler,
        scheduler=row.scheduler,
        steps=steps,
        cfg_scale=cfg,
        eta=gamma,
        width=width,
        height=height,
        lora_name=lora_name,
        lora_weight=weight if lora_name else None,
        lora_aliases=aliases,
        hr_second_pass_steps=hr_steps,
        reset_hr_sampler=reset_hr_sampler,
        size_fix=size_fix,
        warnings=tuple(warnings),
        notes=tuple(notes),
        status=status,
        infotext=tuple(format_infotext(effective).items()),
    )


def _status_line(row, base, steps, cfg, gamma, lora_name, weight, width, height, hr_steps, reset_hr) -> str:
    parts = [f"{row.sampler} + {row.scheduler}", f"{steps} step{'s' if steps != 1 else ''}", f"CFG {cfg:g}"]
    if gamma is not None:
        parts.append(f"gamma {gamma:g}")
    if lora_name:
        parts.append(loratags.lora_tag(lora_name, weight))
    if width is not None:
        parts.append(f"size {width}×{height}")
    if hr_steps is not None:
        parts.append(f"hires {hr_steps} steps")
    if reset_hr:
        parts.append("hires same sampler")
    return f"Hyper-SD: {row.title} ({BASE_LABELS.get(base, base)}) — " + ", ".join(parts)


# --------------------------------------------------------------------------------------------- apply_plan


def _with_tag(prompt: Any, plan: Plan) -> Any:
    if isinstance(prompt, list):
        return [_with_tag(x, plan) for x in prompt]
    if not isinstance(prompt, str):
        return prompt
    return loratags.add_lora_tag(prompt, plan.lora_name, plan.lora_weight, plan.lora_aliases)


def apply_plan(p: Any, plan: Plan) -> list[str]:
    """Write ``plan`` onto the processing object ``p``; returns what was changed ("steps: 20 → 4"…).

    Idempotent: applying the same plan twice changes nothing more (the LoRA tag is never doubled,
    a tag the user typed for the same file is replaced in place).  A disabled plan touches nothing;
    a plan with errors raises :class:`HyperPlanError` before anything is changed.
    """
    if not plan.enabled:
        return []
    if plan.errors:
        raise HyperPlanError("\n".join(plan.errors))
    changes: list[str] = []

    def put(attr: str, value: Any) -> None:
        old = getattr(p, attr, None)
        if old != value:
            setattr(p, attr, value)
            changes.append(f"{attr}: {old!r} → {value!r}")

    for attr, value in (
        ("sampler_name", plan.sampler_name),
        ("scheduler", plan.scheduler),
        ("steps", plan.steps),
        ("cfg_scale", plan.cfg_scale),
        ("eta", plan.eta),
        ("width", plan.width),
        ("height", plan.height),
    ):
        if value is not None:
            put(attr, value)

    if plan.lora_name:
        # all_prompts / all_hr_prompts feed the Lora extension per batch (every prompt, since WebUI takes the
        # networks of a batch from its first prompt); main_prompt, prompt and hr_prompt keep the UI and the
        # returned info consistent.  Empty prompt/hr_prompt strings mean "same as the prompt": left alone.
        for attr in ("all_prompts", "all_hr_prompts", "main_prompt", "prompt", "hr_prompt"):
            old = getattr(p, attr, None)
            if old is None or (attr in ("prompt", "hr_prompt") and old == ""):
                continue
            new = _with_tag(old, plan)
            if new != old:
                setattr(p, attr, new)
                changes.append(f"{attr}: {plan.lora_tag}")

    if plan.hr_second_pass_steps is not None:
        put("hr_second_pass_steps", plan.hr_second_pass_steps)
    if plan.reset_hr_sampler:
        # None = "Use same sampler / scheduler" (txt2img's init copies the first pass's scheduler later).
        for attr in ("hr_sampler_name", "hr_scheduler"):
            if getattr(p, attr, None) is not None:
                put(attr, None)

    if plan.infotext:
        # p.extra_generation_params may be shared between jobs: replace the dict, never mutate it.
        old_params = getattr(p, "extra_generation_params", None) or {}
        new_params = {**old_params, **dict(plan.infotext)}
        if new_params != old_params:
            p.extra_generation_params = new_params
            changes.append("infotext: " + ", ".join(k for k, _ in plan.infotext))
    return changes
