"""Hyper-SD presets: one table, one row per (preset id, base model).

Every button of the Hyper-SD accordion is one row of :data:`PRESETS`.  A row says which LoRA
file to load (the local name in WebUI's Lora folder), at which weight, with which WebUI sampler
and schedule, how many steps, which CFG, which size, and where each recommendation comes from
(``source``).  Values not stated by a source are marked "our choice" there.

The N-step Hyper LoRAs (1, 2, 4, 8 steps) combine with a second small table,
:data:`SAMPLER_CHOICES`: TCD (default), DPM++ SDE Karras (a common WebUI recipe) or
Euler + Trailing (the official recipe).  :func:`preset_with_sampler` merges the two.

Sampler and schedule names come from :mod:`hypersd.sampler_names`; every file a row uses is a catalog entry
(``catalog_id``, :mod:`hypersd.catalog`), whose local name becomes the row's ``lora_file`` / ``model_file``.
"Our distilled LoRA" is filled from a LoRA's ``hypersd_*`` metadata (:mod:`hypersd.lora_metadata`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from hypersd.catalog import BASES, FLUX_BASE, CatalogEntry, get_entry
from hypersd.lora_metadata import read_recipe
from hypersd.preset_types import (  # noqa: F401  (re-exported: the preset table's vocabulary)
    BASE_LABELS,
    GROUP_CFG,
    GROUP_DISTILLED,
    GROUP_FLUX,
    GROUP_HOUSE,
    GROUP_NSTEP,
    GROUP_PEERS,
    GROUP_UNET,
    GROUP_UNIFIED,
    NATIVE_SIZE,
    FluxPreset,
    HyperPreset,
    strip_extension,
)
from hypersd.presets_flux import FLUX_PRESETS
from hypersd.sampler_names import TCD_DEFAULT_GAMMA, TCD_SAMPLER


@dataclasses.dataclass(frozen=True)
class SamplerChoice:
    """A sampler/schedule pair the N-step Hyper LoRAs can use; None fields keep the preset's value."""

    id: str
    title: str
    sampler: str
    scheduler: str
    cfg: float | None
    weight_sdxl: float | None
    weight_sd15: float | None
    model_calls_per_step: int  # DPM++ SDE evaluates the model twice per step
    source: str


SAMPLER_CHOICES: tuple[SamplerChoice, ...] = (
    SamplerChoice(
        "tcd", "TCD (default)", "TCD", "TCD", None, None, None, 1,
        "seed notes (a WebUI user's recipe: TCD with Hyper-SDXL, 4 steps); the TCD schedule is "
        "diffusers' TCDScheduler default grid (original_inference_steps=50)",
    ),
    SamplerChoice(
        "dpmpp_sde_karras", "DPM++ SDE Karras (WebUI recipe)", "DPM++ SDE", "Karras", 2.0, 0.8, None, 2,
        "seed notes (DPM++ SDE Karras, 4 steps, CFG 2, 1024²); SDXL weight 0.8: community practice "
        "(a popular app's Hyper-SD preset); SD1.5 keeps weight 1.0 (community practice)",
    ),
    # The official recipe is diffusers' DDIM with timestep_spacing="trailing".  WebUI's "DDIM" sampler
    # ignores the schedule selector and uses its own grid (4 steps → 1, 251, 501, 751: it never starts
    # at 999), so we use Euler on our "Trailing" sigmas instead: a deterministic DDIM step (eta 0) *is*
    # an Euler step in k-diffusion's sigma parameterisation, so this reproduces the official sampler.
    SamplerChoice(
        "euler_trailing", "Euler + Trailing (official)", "Euler", "Trailing", None, None, None, 1,
        "official model card (diffusers example: DDIM, timestep_spacing='trailing', guidance 0 = WebUI CFG 1)",
    ),
)  # fmt: skip
SAMPLER_CHOICE_IDS = tuple(c.id for c in SAMPLER_CHOICES)
DEFAULT_SAMPLER_CHOICE = "tcd"
ALL_SAMPLER_CHOICES = SAMPLER_CHOICE_IDS


def _local(catalog_id: str) -> str:
    """The catalog file's name in WebUI's folder."""
    return get_entry(catalog_id).local_filename


def _hyper_id(base: str, steps: str) -> str:
    """The catalog id of an official Hyper-SD LoRA: ``hyper-sdxl-4steps-lora``, ``hyper-sd15-8steps-cfg-lora``."""
    return f"hyper-{base}-{steps}-lora"


def _nstep(n: int, base: str) -> HyperPreset:
    entry_id = _hyper_id(base, f"{n}step" if n == 1 else f"{n}steps")
    return HyperPreset(
        id=f"hyper-{n}step",
        base=base,
        group=GROUP_NSTEP,
        title=f"Hyper-SD {n}-step",
        lora_file=_local(entry_id),
        weight=1.0,
        weight_range=(0.7, 1.0) if base == "sdxl" else (0.8, 1.1),
        sampler="TCD",
        scheduler="TCD",
        steps=n,
        steps_range=(n, n),
        cfg=1.0,
        cfg_range=(1.0, 2.0),
        uses_cfg=False,
        size=NATIVE_SIZE[base],
        gamma=1.0 if n == 1 else TCD_DEFAULT_GAMMA,
        hires_steps=max(n, 2),
        hires_denoise=0.5,
        source=(
            "official model card (LoRA scale 1.0, guidance 0 = CFG 1, N steps); weight range: community "
            "practice (SDXL 0.7-0.8, SD1.5 about 1.0); CFG up to 2: seed notes / community (CFG 1-1.5); "
            + ("gamma 1.0: official default of the unified 1-step LoRA; " if n == 1 else "gamma 0.3: our choice (TCD default); ")
            + "hires steps and denoising 0.5: our choice"
        ),
        catalog_id=entry_id,
        sampler_choices=ALL_SAMPLER_CHOICES,
    )  # fmt: skip


def _cfg_lora(n: int, base: str) -> HyperPreset:
    entry_id = _hyper_id(base, f"{n}steps-cfg")
    return HyperPreset(
        id=f"hyper-cfg-{n}step",
        base=base,
        group=GROUP_CFG,
        title=f"Hyper-SD CFG {n}-step",
        lora_file=_local(entry_id),
        weight=1.0,
        weight_range=(0.7, 1.0) if base == "sdxl" else (0.8, 1.1),
        sampler="Euler",  # see the euler_trailing choice: Euler on trailing sigmas = diffusers DDIM trailing
        scheduler="Trailing",
        steps=n,
        steps_range=(n, n),
        cfg=5.0,
        cfg_range=(5.0, 8.0),
        uses_cfg=True,
        size=NATIVE_SIZE[base],
        gamma=None,
        hires_steps=n // 2,
        hires_denoise=0.5,
        source="official model card (DDIM trailing, guidance 5-8, negative prompts work, LoRA scale 1.0); "
        "hires steps and denoising: our choice",
        catalog_id=entry_id,
    )


def _unified(base: str) -> HyperPreset:
    entry_id = _hyper_id(base, "1step")
    return HyperPreset(
        id="hyper-unified-tcd",
        base=base,
        group=GROUP_UNIFIED,
        title="Unified LoRA + TCD (1-8 steps)",
        lora_file=_local(entry_id),
        weight=1.0,
        weight_range=(0.7, 1.0) if base == "sdxl" else (0.8, 1.1),
        sampler="TCD",
        scheduler="TCD",
        steps=4,
        steps_range=(1, 8),
        cfg=1.0,
        cfg_range=(1.0, 2.0),
        uses_cfg=False,
        size=NATIVE_SIZE[base],
        gamma=1.0,
        hires_steps=4,
        hires_denoise=0.5,
        source="official model card (unified LoRA, TCD sampler, 1-8 steps, eta/gamma 1.0 by default, lower "
        "gamma for more detail); 4 steps as the default: our choice; hires advice: our choice",
        catalog_id=entry_id,
    )


def _peer(**fields) -> HyperPreset:
    defaults = dict(
        group=GROUP_PEERS, weight=1.0, weight_range=(0.8, 1.0), cfg=1.0, cfg_range=(1.0, 2.0), uses_cfg=False,
        gamma=None, hires_denoise=0.5,
    )  # fmt: skip
    defaults.update(fields)
    if defaults.get("catalog_id") and "model_file" not in defaults:
        defaults["lora_file"] = _local(defaults["catalog_id"])
    defaults.setdefault("size", NATIVE_SIZE[defaults["base"]])
    defaults.setdefault("hires_steps", defaults["steps"])
    return HyperPreset(**defaults)


def _lightning(n: int) -> HyperPreset:
    return _peer(
        id=f"lightning-{n}step", base="sdxl", title=f"SDXL-Lightning {n}-step", catalog_id=f"sdxl-lightning-{n}step-lora",
        sampler="Euler", scheduler="Trailing", steps=n, steps_range=(n, n),
        source="SDXL-Lightning model card (Euler, trailing timesteps, guidance 0 = CFG 1, LoRA scale 1)",
    )  # fmt: skip


PRESETS: tuple[HyperPreset, ...] = (
    *(_nstep(n, base) for n in (1, 2, 4, 8) for base in BASES),
    *(_cfg_lora(n, base) for n in (8, 12) for base in BASES),
    *(_unified(base) for base in BASES),
    HyperPreset(
        id="hyper-sdxl-1step-unet",
        base="sdxl",
        group=GROUP_UNET,
        title="Hyper-SDXL 1-step UNet",
        lora_file=None,
        weight=1.0,
        weight_range=(1.0, 1.0),
        sampler="LCM",
        scheduler="Hyper 1-step (t=800)",
        steps=1,
        steps_range=(1, 1),
        cfg=1.0,
        cfg_range=(1.0, 1.0),
        uses_cfg=False,
        size=(1024, 1024),
        gamma=None,
        hires_steps=1,
        hires_denoise=0.5,
        source="official model card (LCM scheduler, single timestep 800, guidance 0); hires advice: our choice",
        catalog_id="hyper-sdxl-1step-unet",
        model_file=_local("hyper-sdxl-1step-unet"),
        note="a full UNet replacement, not a LoRA: load it as the model's UNet",
    ),
    *(_lightning(n) for n in (2, 4, 8)),
    # LCM's own scheduler uses the same 50-point "original" grid as TCD (4 steps → 999, 759, 499, 259),
    # so our "TCD" schedule reproduces diffusers' LCMScheduler timesteps exactly.
    *(
        _peer(
            id="lcm-lora",
            base=base,
            title="LCM-LoRA",
            catalog_id=entry_id,
            sampler="LCM",
            scheduler="TCD",
            steps=4,
            steps_range=(4, 8),
            cfg=1.0,
            cfg_range=(1.0, 2.0),
            source="LCM-LoRA model card (LCM scheduler, 4-8 steps, guidance 1-2, LoRA scale 1)",
        )
        for base, entry_id in (("sd15", "lcm-lora-sdv1-5"), ("sdxl", "lcm-lora-sdxl"))
    ),
    *(
        _peer(
            id="tcd-lora",
            base=base,
            title="TCD-LoRA",
            catalog_id=entry_id,
            sampler="TCD",
            scheduler="TCD",
            steps=4,
            steps_range=(2, 8),
            gamma=TCD_DEFAULT_GAMMA,
            source="TCD-LoRA model card (TCD scheduler, 2-8 steps, gamma 0.3, guidance 0 = CFG 1)",
        )
        for base, entry_id in (("sd15", "tcd-sd15-lora"), ("sdxl", "tcd-sdxl-lora"))
    ),
    _peer(
        id="turbo",
        base="sdxl",
        title="SDXL-Turbo",
        lora_file=None,
        weight_range=(1.0, 1.0),
        sampler="Euler a",
        scheduler="Trailing",
        steps=1,
        steps_range=(1, 4),
        cfg=1.0,
        cfg_range=(1.0, 1.0),
        size=(512, 512),
        source="SDXL-Turbo model card (Euler a, 1-4 steps, guidance 0, 512²); Trailing (start at t=999): our choice",
        catalog_id="sdxl-turbo-fp16",
        model_file=_local("sdxl-turbo-fp16"),
        note="a full checkpoint: load it as the model",
    ),
    # DMD2's 4-step timesteps 999, 749, 499, 249 are exactly the trailing grid.
    _peer(
        id="dmd2",
        base="sdxl",
        title="DMD2 4-step",
        catalog_id="dmd2-sdxl-4step-lora",
        sampler="LCM",
        scheduler="Trailing",
        steps=4,
        steps_range=(1, 4),
        source="DMD2 model card (LCM scheduler, timesteps 999/749/499/249, guidance 0 = CFG 1)",
    ),
    HyperPreset(
        id="house-fast",
        base="any",
        group=GROUP_HOUSE,
        title="House model, fast schedule",
        lora_file=None,
        weight=1.0,
        weight_range=(1.0, 1.0),
        sampler="DPM++ 2M",
        scheduler="Align Your Steps",
        steps=12,
        steps_range=(10, 15),
        cfg=5.0,
        cfg_range=(3.0, 8.0),
        uses_cfg=True,
        size=(0, 0),
        gamma=None,
        hires_steps=8,
        hires_denoise=0.4,
        source="seed notes (no LoRA, 10-15 steps, Align-Your-Steps or SGM Uniform schedule); DPM++ 2M, "
        "CFG 5 and the hires advice: our choice",
        note="size (0, 0): the loaded model's native size",
    ),
    HyperPreset(
        id="distilled",
        base="any",
        group=GROUP_DISTILLED,
        title="Our distilled LoRA",
        lora_file=None,
        weight=1.0,
        weight_range=(0.5, 1.2),
        sampler="TCD",
        scheduler="TCD",
        steps=4,
        steps_range=(1, 8),
        cfg=1.0,
        cfg_range=(1.0, 2.0),
        uses_cfg=False,
        size=(0, 0),
        gamma=TCD_DEFAULT_GAMMA,
        hires_steps=4,
        hires_denoise=0.5,
        source="template: the LoRA's hypersd_* metadata overrides these (see preset_from_metadata); "
        "defaults are our choice",
        note="pick the LoRA; its metadata carries the recipe",
    ),
)


PRESET_IDS: tuple[str, ...] = tuple(dict.fromkeys(p.id for p in PRESETS))
FLUX_PRESET_IDS: tuple[str, ...] = tuple(p.id for p in FLUX_PRESETS)
ALL_PRESETS: tuple[HyperPreset, ...] = PRESETS + FLUX_PRESETS
ALL_PRESET_IDS: tuple[str, ...] = PRESET_IDS + FLUX_PRESET_IDS
DEFAULT_PRESET = "hyper-4step"


def rows_for(preset_id: str) -> tuple[HyperPreset, ...]:
    return tuple(p for p in ALL_PRESETS if p.id == preset_id)


def model_family(base: str) -> str:
    """ "flux-dev" for FLUX.1-dev, "sd" for SD1.5/SDXL and the "any" rows (which are SD recipes): a preset of one family
    never runs on a model of the other."""
    return FLUX_BASE if base == FLUX_BASE else "sd"


def rows_for_bases(bases: tuple[str, ...] = BASES) -> tuple[HyperPreset, ...]:
    """The rows for one of ``bases`` or for any model, in table order."""
    return tuple(r for r in ALL_PRESETS if r.base in (*bases, "any"))


def preset_ids_for(bases: tuple[str, ...] = BASES) -> tuple[str, ...]:
    """The ids of the presets with a row for one of ``bases`` (or for any model), in table order."""
    return tuple(dict.fromkeys(p.id for p in rows_for_bases(bases)))


def get_preset(preset_id: str, base: str) -> HyperPreset:
    """The row of ``preset_id`` for ``base`` ("sd15"/"sdxl"); KeyError with a readable message if none."""
    rows = rows_for(preset_id)
    if not rows:
        raise KeyError(f"Hyper-SD: unknown preset {preset_id!r}; known: {', '.join(ALL_PRESET_IDS)}")
    for row in rows:
        if row.base in (base, "any"):
            if row.size == (0, 0) and base in NATIVE_SIZE:
                return dataclasses.replace(row, size=NATIVE_SIZE[base])
            return row
    bases = "/".join(r.base for r in rows)
    raise KeyError(f"Hyper-SD: preset {preset_id!r} exists only for {bases}, not for {base}")


def presets_by_group(bases: tuple[str, ...] = BASES) -> dict[str, list[str]]:
    """Preset ids per UI group, in table order (for the accordion's button rows), of the presets with a row for one
    of ``bases``: A1111 runs SD1.5/SDXL only (the default); Forge also runs FLUX.1-dev."""
    groups: dict[str, list[str]] = {}
    for row in rows_for_bases(bases):
        ids = groups.setdefault(row.group, [])
        if row.id not in ids:
            ids.append(row.id)
    return groups


def preset_titles(preset_ids: tuple[str, ...] = PRESET_IDS) -> dict[str, str]:
    """Button / dropdown titles per preset id (the first row's title; titles do not differ by base)."""
    return {preset_id: rows_for(preset_id)[0].title for preset_id in preset_ids}


def get_sampler_choice(choice_id: str) -> SamplerChoice:
    for choice in SAMPLER_CHOICES:
        if choice.id == choice_id:
            return choice
    raise KeyError(f"Hyper-SD: unknown sampler choice {choice_id!r}; known: {', '.join(SAMPLER_CHOICE_IDS)}")


def preset_with_sampler(preset: HyperPreset, choice_id: str) -> HyperPreset:
    """The row with the sampler choice applied; rows with no choices (``sampler_choices == ()``) stay as they are."""
    choice = get_sampler_choice(choice_id)
    if choice_id not in preset.sampler_choices:
        return preset
    weight = choice.weight_sdxl if preset.base == "sdxl" else choice.weight_sd15
    cfg = preset.cfg if choice.cfg is None else choice.cfg
    return dataclasses.replace(
        preset,
        sampler=choice.sampler,
        scheduler=choice.scheduler,
        cfg=cfg,
        cfg_range=(min(preset.cfg_range[0], cfg), max(preset.cfg_range[1], cfg)),
        weight=preset.weight if weight is None else weight,
        gamma=preset.gamma if choice.sampler == "TCD" else None,
        source=f"{preset.source}; sampler: {choice.source}",
    )


def catalog_entries(preset_id: str, base: str | None = None) -> tuple[CatalogEntry, ...]:
    """The catalog files a preset uses, optionally only those for one base model ("sd15" / "sdxl")."""
    rows = (r for r in rows_for(preset_id) if r.catalog_id and (base is None or r.base in (base, "any")))
    return tuple(dict.fromkeys(r.catalog_entry for r in rows))


def preset_from_metadata(metadata: Mapping[str, str] | None, lora_file: str | None = None) -> HyperPreset | None:
    """The "distilled" preset filled from a LoRA's ``hypersd_*`` metadata (:func:`hypersd.lora_metadata.read_recipe`).

    None when the metadata carries no recipe.  ``lora_file`` (the file's name) is recorded in the row.  Raises
    :class:`~hypersd.lora_metadata.PresetMetadataError` for malformed values.
    """
    recipe = read_recipe(metadata)
    if recipe is None:
        return None
    template = rows_for("distilled")[0]
    steps, base = recipe.steps, recipe.base or "any"
    cfg = 1.0 if recipe.cfg is None else max(recipe.cfg, 1.0)  # WebUI's CFG 1 is "no guidance"; 0 in diffusers terms
    weight = template.weight if recipe.weight is None else recipe.weight
    gamma = template.gamma if recipe.gamma is None else recipe.gamma
    return dataclasses.replace(
        template,
        base=base,
        lora_file=lora_file,
        sampler=recipe.sampler,
        scheduler=recipe.scheduler,
        steps=steps,
        steps_range=(steps, steps),
        cfg=cfg,
        cfg_range=(min(1.0, cfg), max(2.0, cfg)),
        uses_cfg=cfg > 2.0,
        weight=weight,
        weight_range=(min(template.weight_range[0], weight), max(template.weight_range[1], weight)),
        gamma=gamma if recipe.sampler == TCD_SAMPLER else None,
        size=NATIVE_SIZE.get(base, (0, 0)),
        hires_steps=steps,
        source="the LoRA's hypersd_* metadata (written by the training engine)",
    )
