"""The vocabulary of the preset tables: model-type labels and native sizes, UI groups, the row types.

:mod:`hypersd.presets` (SD1.5/SDXL rows, what A1111 and Forge run) and :mod:`hypersd.presets_flux` (FLUX.1-dev rows,
Forge only) build their rows from these; import them from :mod:`hypersd.presets`, which re-exports them.
"""

from __future__ import annotations

import dataclasses

from hypersd.catalog import FLUX_BASE, CatalogEntry, get_entry

BASE_LABELS = {"sd15": "SD1.5", "sdxl": "SDXL", "sd2": "SD2", "sd3": "SD3", FLUX_BASE: "FLUX.1-dev"}
#: FLUX.1-dev: 1024² is diffusers' FluxPipeline default size (default_sample_size 128 × VAE factor 8).
NATIVE_SIZE = {"sd15": (512, 512), "sdxl": (1024, 1024), FLUX_BASE: (1024, 1024)}

GROUP_NSTEP = "Hyper-SD N-step LoRA"
GROUP_CFG = "Hyper-SD CFG-preserving LoRA"
GROUP_UNIFIED = "Hyper-SD unified 1-step LoRA + TCD"
GROUP_UNET = "Hyper-SDXL 1-step UNet"
GROUP_PEERS = "Peers"
GROUP_HOUSE = "House model, no LoRA"
GROUP_DISTILLED = "Our distilled LoRA"
GROUP_FLUX = "Hyper-FLUX.1-dev LoRA"


@dataclasses.dataclass(frozen=True)
class HyperPreset:
    """One recommended recipe for one base model.

    ``weight_range``, ``steps_range`` and ``cfg_range`` are the recommended ranges: a value
    outside them is allowed but warned about.  ``lora_file`` is None for presets without a
    LoRA (a full checkpoint or UNet, or the house model); ``model_file`` then names the
    checkpoint/UNet the preset expects to be loaded (None: any).
    """

    id: str
    base: str  # "sd15" | "sdxl" | "any"
    group: str
    title: str
    lora_file: str | None
    weight: float
    weight_range: tuple[float, float]
    sampler: str  # WebUI sampler name
    scheduler: str  # WebUI schedule label
    steps: int
    steps_range: tuple[int, int]
    cfg: float  # WebUI convention: 1 = no guidance
    cfg_range: tuple[float, float]
    uses_cfg: bool  # CFG > ~2 and negative prompts do something useful
    size: tuple[int, int]  # native (width, height)
    gamma: float | None  # TCD gamma; None unless the sampler is TCD
    hires_steps: int  # advised hires-fix second-pass steps
    hires_denoise: float  # advised hires-fix / img2img denoising strength
    source: str
    catalog_id: str | None = None  # the catalog entry of the file this row uses (LoRA, checkpoint or UNet)
    model_file: str | None = None  # the checkpoint/UNet to be loaded: the catalog entry's local name
    sampler_choices: tuple[str, ...] = ()  # ids of SAMPLER_CHOICES this row accepts (empty: fixed)
    note: str = ""

    @property
    def catalog_entry(self) -> CatalogEntry | None:
        return get_entry(self.catalog_id) if self.catalog_id else None

    @property
    def lora_stem(self) -> str | None:
        """The name WebUI's ``<lora:NAME>`` uses: the file name without extension."""
        return strip_extension(self.lora_file) if self.lora_file else None


@dataclasses.dataclass(frozen=True)
class FluxPreset(HyperPreset):
    """A FLUX.1-dev row: Flux dev is guidance-distilled, so its "guidance" is Forge's ``p.distilled_cfg_scale``
    (a model input), not CFG; the CFG scale stays 1 (no unconditional pass)."""

    guidance: float = 3.5


def strip_extension(file_name: str) -> str:
    for ext in (".safetensors", ".ckpt", ".pt", ".bin"):
        if file_name.lower().endswith(ext):
            return file_name[: -len(ext)]
    return file_name
