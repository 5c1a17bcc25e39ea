"""What the accordion reads from WebUI: the loaded model's type, the LoRAs on disk, the current model files.

Kept apart from the gradio code so that ``process()`` and the status line share one reading.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from hypersd.loras import LoraInfo


def model_base(sd_model: Any) -> str | None:
    """ "sd15" / "sdxl" / "sd2" / "sd3" from WebUI's model flags (``is_sdxl``, ``is_sd1``…); None if unknown."""
    if sd_model is None:
        return None
    for flag, base in (("is_sdxl", "sdxl"), ("is_sd3", "sd3"), ("is_sd2", "sd2"), ("is_sd1", "sd15")):
        if getattr(sd_model, flag, False):
            return base
    return None


def lora_module() -> Any:
    """The built-in Lora extension's ``networks`` module (loaded by its script as a top-level module)."""
    networks = sys.modules.get("networks")
    if networks is None or not hasattr(networks, "available_networks"):
        return None
    return networks


def available_loras(refresh: bool = False) -> dict[str, LoraInfo]:
    networks = lora_module()
    if networks is None:
        return {}
    if refresh and hasattr(networks, "list_available_networks"):
        networks.list_available_networks()
    return {name: LoraInfo.from_network_on_disk(net) for name, net in dict(networks.available_networks).items()}


def loaded_model_files(shared: Any) -> dict[str, str | None]:
    info = getattr(getattr(shared, "sd_model", None), "sd_checkpoint_info", None)
    model = os.path.basename(getattr(info, "filename", "") or "") or None
    unet = getattr(shared.opts, "sd_unet", None)
    return {"model_name": model, "unet_name": None if unet in (None, "None", "Automatic") else unet}
