"""What a plan can refuse or warn about, as typed values, and their messages (rendered here and nowhere else).

:func:`hypersd.plan.make_plan` returns these in ``Plan.refusals`` and ``Plan.cautions``; code decides on their
types (``isinstance(r, MissingLora)``), people read :func:`render`.  A new outcome is a dataclass here plus one
line in :data:`_RENDER`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from hypersd.catalog import FLUX_BASE, CatalogEntry
from hypersd.presets import BASE_LABELS, HyperPreset

#: CFG above this with a LoRA distilled without guidance burns the image (seed notes: CFG 2 still fine).
CFG_WARN_ABOVE = 2.0


class Refusal:
    """Generation must not start."""


class Caution:
    """Generation runs, but a setting is unusual (console + infotext comment)."""


def _label(base: str | None) -> str:
    return BASE_LABELS.get(base or "", str(base))


def _range_text(lo: float, hi: float) -> str:
    return f"{lo:g}" if lo == hi else f"{lo:g}–{hi:g}"


# ------------------------------------------------------------------------------------------------- refusals


@dataclasses.dataclass(frozen=True)
class UnknownModelType(Refusal):
    model_base: str | None


@dataclasses.dataclass(frozen=True)
class UnsupportedModel(Refusal):
    base: str


@dataclasses.dataclass(frozen=True)
class SeveralAcceleratorTags(Refusal):
    tags: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class TagWeightNotANumber(Refusal):
    tag: str


@dataclasses.dataclass(frozen=True)
class TagSettingInvalid(Refusal):
    problem: str  # the settings' own "Hyper-SD: ..." message
    tag: str


@dataclasses.dataclass(frozen=True)
class TagForOtherModel(Refusal):
    tag: str
    lora_base: str
    base: str


@dataclasses.dataclass(frozen=True)
class NoDistilledLora(Refusal):
    base: str


@dataclasses.dataclass(frozen=True)
class LoraNotListed(Refusal):
    name: str  # as typed in the accordion's LoRA field


@dataclasses.dataclass(frozen=True)
class LoraMetadataInvalid(Refusal):
    problem: str
    lora: str


@dataclasses.dataclass(frozen=True)
class LoraWithoutRecipe(Refusal):
    lora: str


@dataclasses.dataclass(frozen=True)
class PresetUnknown(Refusal):
    preset_id: str
    known: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class PresetNotForModel(Refusal):
    preset_id: str
    bases: tuple[str, ...]  # the bases the preset has rows for
    base: str


@dataclasses.dataclass(frozen=True)
class PresetForOtherModelFamily(Refusal):
    """A FLUX.1-dev preset on an SD1.5/SDXL model, or an SD preset on a FLUX.1-dev model."""

    title: str
    preset_base: str  # a base of the preset's rows ("flux-dev", "sd15", "sdxl", "any")
    base: str  # the loaded model's


@dataclasses.dataclass(frozen=True)
class PresetNotOnHost(Refusal):
    """A preset this WebUI cannot run (the 1-step UNet preset in Forge), asked for by the API or a paste."""

    preset_id: str
    host: str
    offered: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class MissingLora(Refusal):
    """The preset's LoRA is not in the Lora folder under any name, alias or (for catalog files) hash."""

    preset: HyperPreset
    base: str
    entry: CatalogEntry | None  # where it comes from; None for a file the catalog does not know


@dataclasses.dataclass(frozen=True)
class LoraForOtherModel(Refusal):
    lora: str
    lora_base: str
    base: str


# ------------------------------------------------------------------------------------------------- cautions


@dataclasses.dataclass(frozen=True)
class StepsOutsideRange(Caution):
    steps: int
    preset: HyperPreset


@dataclasses.dataclass(frozen=True)
class CfgBurns(Caution):
    cfg: float
    preset: HyperPreset


@dataclasses.dataclass(frozen=True)
class CfgOutsideRange(Caution):
    cfg: float
    preset: HyperPreset


@dataclasses.dataclass(frozen=True)
class WeightOutsideRange(Caution):
    weight: float
    preset: HyperPreset


@dataclasses.dataclass(frozen=True)
class ModelNotLoaded(Caution):
    preset: HyperPreset
    loaded: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class SizeFarFromNative(Caution):
    size: tuple[int, int]
    preset: HyperPreset
    fitted: tuple[int, int]


@dataclasses.dataclass(frozen=True)
class HiresRunsManySteps(Caution):
    steps: int
    preset: HyperPreset


@dataclasses.dataclass(frozen=True)
class DenoiseFarFromAdvice(Caution):
    where: str  # "img2img" | "hires fix"
    denoise: float
    preset: HyperPreset


@dataclasses.dataclass(frozen=True)
class OnlyLastStepRuns(Caution):
    steps: int
    denoise: float


# ------------------------------------------------------------------------------------------------- messages


def _missing_lora(o: MissingLora) -> str:
    origin, entry = "", o.entry
    if entry is not None:
        renamed = "" if entry.filename == entry.local_filename else f", saved as {entry.local_filename}"
        origin = f" Download {entry.repo} → {entry.filename}{renamed} into WebUI's models/Lora folder"
        origin += " (or in WebUI's 'Hyper-SD Models' tab, which verifies it and refreshes the LoRA list)."
    return (
        f"the preset '{o.preset.title}' ({_label(o.base)}) needs the LoRA {o.preset.lora_file}, which is not in "
        f"your Lora folder (looked for it by name, alias and hash).{origin}"
    )


def _other_family(o: PresetForOtherModelFamily) -> str:
    if o.preset_base == FLUX_BASE:
        return (
            f"the preset '{o.title}' is for FLUX.1-dev models, but the loaded model is {_label(o.base)}: load a "
            f"FLUX.1-dev checkpoint in Forge (AUTOMATIC1111 WebUI cannot run Flux) or pick a {_label(o.base)} preset"
        )
    return (
        f"the preset '{o.title}' is for SD1.5/SDXL models, but the loaded model is {_label(o.base)}: pick a "
        "Hyper-FLUX preset (8 or 16 steps) or load an SD1.5/SDXL checkpoint"
    )


def _cfg_burns(o: CfgBurns) -> str:
    p = o.preset
    return (
        f"CFG {o.cfg:g} with {p.title}, which was distilled without guidance: images burn above "
        f"~{CFG_WARN_ABOVE:g}; use CFG {_range_text(*p.cfg_range)} or a CFG-preserving preset"
    )


def _size_far(o: SizeFarFromNative) -> str:
    (w, h), (nw, nh), (fw, fh) = o.size, o.preset.size, o.fitted
    return f"{w}×{h} is far from {o.preset.title}'s native {nw}×{nh} ({nw * nh / 1e6:.2f} MP); use {fw}×{fh}"


_RENDER: dict[type, Callable] = {
    UnknownModelType: lambda o: (
        f"the loaded model's type ({o.model_base!r}) is unknown; load an SD1.5 or SDXL checkpoint"
    ),
    UnsupportedModel: lambda o: f"the presets are for SD1.5 and SDXL models; the loaded model is {_label(o.base)}",
    SeveralAcceleratorTags: lambda o: (
        f"the prompt has tags of several accelerator LoRAs ({', '.join(o.tags)}); keep only one"
    ),
    TagWeightNotANumber: lambda o: f"the weight in {o.tag} is not a number",
    TagSettingInvalid: lambda o: f"{o.problem.removeprefix('Hyper-SD: ')} (from the prompt tag {o.tag})",
    TagForOtherModel: lambda o: (
        f"{o.tag} is a {_label(o.lora_base)} LoRA but the loaded model is {_label(o.base)}; "
        f"remove the tag or load a {_label(o.lora_base)} model"
    ),
    NoDistilledLora: lambda o: (
        "no distilled LoRA for this model type in your Lora folder: train one in the "
        "Hyper-SD Train tab, or pick a LoRA in the accordion's LoRA field"
    ),
    LoraNotListed: lambda o: f"the LoRA {o.name!r} is not in your Lora folder",
    LoraMetadataInvalid: lambda o: f"{o.problem.removeprefix('Hyper-SD: ')} (LoRA {o.lora})",
    LoraWithoutRecipe: lambda o: (
        f"the LoRA {o.lora} carries no hypersd_* recommendations in its metadata; pick "
        "another preset or a LoRA made by the Hyper-SD training"
    ),
    PresetUnknown: lambda o: f"unknown preset {o.preset_id!r}; known: {', '.join(o.known)}",
    PresetNotForModel: lambda o: (
        f"preset {o.preset_id!r} exists only for {'/'.join(o.bases)}, not for {o.base}; "
        "load a model of the preset's type or pick another preset"
    ),
    PresetForOtherModelFamily: _other_family,
    PresetNotOnHost: lambda o: (
        f"the preset {o.preset_id!r} does not run in {o.host} yet; pick another one: {', '.join(o.offered)}"
    ),
    MissingLora: _missing_lora,
    LoraForOtherModel: lambda o: (
        f"the LoRA {o.lora} is for {_label(o.lora_base)} but the loaded model is "
        f"{_label(o.base)}; load a {_label(o.lora_base)} model or pick the matching preset"
    ),
    StepsOutsideRange: lambda o: (
        f"{o.steps} steps; {o.preset.title} is made for {_range_text(*o.preset.steps_range)} steps"
    ),
    CfgBurns: _cfg_burns,
    CfgOutsideRange: lambda o: f"CFG {o.cfg:g}; {o.preset.title} is made for CFG {_range_text(*o.preset.cfg_range)}",
    WeightOutsideRange: lambda o: (
        f"LoRA weight {o.weight:g}; usual for {o.preset.title} is {_range_text(*o.preset.weight_range)}"
    ),
    ModelNotLoaded: lambda o: (
        f"{o.preset.title} expects {o.preset.model_file} to be loaded ({o.preset.note}); loaded: {', '.join(o.loaded)}"
    ),
    SizeFarFromNative: _size_far,
    HiresRunsManySteps: lambda o: (
        f"hires fix runs {o.steps} steps with its own settings; {o.preset.title} needs "
        f"few ({o.preset.hires_steps}): turn on 'Keep hires fix few-step'"
    ),
    DenoiseFarFromAdvice: lambda o: (
        f"{o.where} denoising {o.denoise:g}; few-step models do best near {o.preset.hires_denoise:g}"
    ),
    OnlyLastStepRuns: lambda o: (
        f"img2img with {o.steps} steps at denoising {o.denoise:g} runs only the last step; "
        f"raise denoising to at least {1 / o.steps:.2g}"
    ),
}


def render(outcome: Refusal | Caution) -> str:
    """The message for one outcome, prefixed "Hyper-SD: "."""
    return "Hyper-SD: " + _RENDER[type(outcome)](outcome)


def refused_status(refusals: Sequence[Refusal]) -> str:
    """The status line of a refused plan: its first refusal."""
    return "Hyper-SD: not applied: " + _RENDER[type(refusals[0])](refusals[0])
