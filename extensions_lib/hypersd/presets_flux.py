"""The Hyper-FLUX.1-dev rows of the accordion: only Forge runs FLUX.1-dev, so A1111's table (:data:`hypersd.presets.PRESETS`)
leaves them out and :data:`hypersd.presets.ALL_PRESETS` adds them."""

from __future__ import annotations

from hypersd.catalog import FLUX_BASE, get_entry
from hypersd.preset_types import GROUP_FLUX, NATIVE_SIZE, FluxPreset


def _flux(n: int) -> FluxPreset:
    entry_id = f"hyper-flux.1-dev-{n}steps-lora"
    return FluxPreset(
        id=f"hyper-flux-{n}step", base=FLUX_BASE, group=GROUP_FLUX, title=f"Hyper-FLUX {n}-step",
        lora_file=get_entry(entry_id).local_filename, weight=0.125, weight_range=(0.1, 0.15), sampler="Euler", scheduler="Simple",
        steps=n, steps_range=(n, n), cfg=1.0, cfg_range=(1.0, 1.0), uses_cfg=False, size=NATIVE_SIZE[FLUX_BASE],
        gamma=None, hires_steps=n // 2, hires_denoise=0.5, catalog_id=entry_id, guidance=3.5,
        source=(
            "official model card (ByteDance/Hyper-SD README, news of Aug 26 2024: 8- and 16-step FLUX.1-dev LoRAs, "
            "'LoRA scales around 0.125', 'guidance scale could be kept on 3.5'); Euler: diffusers' FluxPipeline "
            "samples with the flow-matching Euler scheduler; Simple: Forge's own Flux default schedule "
            "(modules/processing_scripts/sampler.py, flux_t2i_scheduler); CFG 1 (no negative pass), weight range "
            "0.1-0.15, hires advice: our choice"
        ),
    )  # fmt: skip


#: Rows for FLUX.1-dev models, which only Forge runs: kept apart from :data:`PRESETS` (A1111's accordion).
FLUX_PRESETS: tuple[FluxPreset, ...] = tuple(_flux(n) for n in (8, 16))
