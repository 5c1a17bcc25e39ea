"""Entry point of the Forge adapter, called once per (re)load by ``scripts/hyper_sd.py`` when the host is Forge.

Everything A1111 and Forge share comes from :mod:`hypersd.webui` (the accordion script, infotext and paste, the API
route, the X/Y/Z axis, the Models and Train tabs, the one :data:`~hypersd.webui.host.CHANGES` registry undone on
unload).  What differs:

- the TCD sampler goes in through Forge's ``add_sampler`` (:mod:`hypersd.forge.samplers`);
- the host profile: Forge also runs FLUX.1-dev (the Hyper-FLUX presets get buttons; the plan sets
  ``p.distilled_cfg_scale``), its model type comes from :mod:`hypersd.forge.host_state`, and our CFG-1 patch stays
  off because Forge's backend already skips the unconditional pass at CFG 1
  (``backend/sampling/sampling_function.py``: ``math.isclose(cond_scale, 1.0)`` → ``uncond_ = None``);
- the 1-step UNet preset is not offered: :mod:`hypersd.webui.unet` swaps weights into A1111's ldm UNet and relies on
  A1111's Lora weight backups; Forge keeps its UNet in ``forge_objects`` (its patcher applies LoRAs), and the
  ``SdUnet`` forward hook is commented out in Forge's ``modules/sd_hijack.py``.  Not made to work there yet.
"""

from __future__ import annotations

import logging

from hypersd.catalog import ALL_CATALOG, BASES, FLUX_BASE
from hypersd.forge import host_state
from hypersd.forge.samplers import register_all
from hypersd.webui import profile
from hypersd.webui.host import CHANGES
from hypersd.webui.samplers import webui_host
from hypersd.webui.setup import register_models, register_xyz_axis, unload
from hypersd.webui.unet import PRESET_ID as UNET_PRESET

log = logging.getLogger("hypersd")

FORGE = profile.HostProfile(
    "Stable Diffusion WebUI Forge",
    (*BASES, FLUX_BASE),
    host_state.model_base,
    cfg1_patch=False,
    hidden_presets=(UNET_PRESET,),
    catalog=ALL_CATALOG,
    # Forge ships its tokenizers instead of fetching them into the HF cache; SDXL's tokenizer/ is CLIP ViT-L's, the
    # same files as SD1.5's (runwayml/stable-diffusion-v1-5/tokenizer), and tokenizer_2/ is SDXL's second ("!" pad).
    tokenizer_dir="backend/huggingface/stabilityai/stable-diffusion-xl-base-1.0",
)


def setup() -> None:
    from modules import script_callbacks

    profile.use(FORGE, CHANGES)
    register_all(webui_host(), CHANGES)
    # Forge, like A1111, clears its callbacks before re-importing scripts, so these are added once per load.
    script_callbacks.on_script_unloaded(unload, name="hypersd unload")
    script_callbacks.on_before_ui(register_xyz_axis, name="hypersd xyz axis")
    register_models(script_callbacks, with_unet=False)
    log.info("Hyper-SD: running in %s", FORGE.name)
