"""Accelerator ``<lora:…>`` tags typed in the prompt configure Hyper-SD like the preset button of their file."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from hypersd import loratags
from hypersd import plan_outcomes as out
from hypersd.plan_outcomes import Refusal
from hypersd.settings import HyperSettings, HyperSettingsError


@dataclasses.dataclass(frozen=True)
class TagSettings:
    settings: HyperSettings
    notes: tuple[str, ...] = ()
    refusals: tuple[Refusal, ...] = ()
    tags: tuple[loratags.FoundTag, ...] = ()


def settings_from_prompt_tags(settings: HyperSettings, prompts: Iterable[str]) -> TagSettings:
    """A hand-typed accelerator tag (any official name or alias, any weight) configures like its button.

    The tag wins over the selected preset: if its file is not the preset's, the preset becomes the first
    one of the table using that file, and steps/CFG/gamma go back to that preset's recommendation.  Its
    weight becomes the LoRA weight.  Two different accelerator files in the prompts are refused.
    """
    if not settings.enabled:
        return TagSettings(settings)
    tags = tuple(t for prompt in prompts for t in loratags.find_hyper_tags(prompt or ""))
    if not tags:
        return TagSettings(settings)
    if len({t.known.file for t in tags}) > 1:
        shown = tuple(dict.fromkeys(t.text for t in tags))
        return TagSettings(settings, refusals=(out.SeveralAcceleratorTags(shown),), tags=tags)
    first = tags[0]
    known = first.known
    notes = []
    if first.weight is None:
        return TagSettings(settings, refusals=(out.TagWeightNotANumber(first.text),), tags=tags)
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
        return TagSettings(settings, refusals=(out.TagSettingInvalid(str(error), first.text),), tags=tags)
    notes.insert(0, f"from the prompt tag {first.text}: preset {new.preset}, weight {first.weight:g}")
    return TagSettings(new, notes=tuple(notes), tags=tags)
