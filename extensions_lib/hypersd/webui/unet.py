"""The Hyper-SDXL 1-step UNet in WebUI v1.10 through WebUI's own UNet-replacement hook (``modules/sd_unet.py``).

How WebUI's hook works (v1.10.1 source): extensions add ``SdUnetOption`` objects in ``on_list_unets``; the option
chosen in Settings → "SD Unet" (``opts.sd_unet``) is applied by ``sd_unet.apply_unet()`` right after the scripts'
``process()`` of every generation: the loaded UNet is moved to the CPU, the option's ``create_unet()`` result is
``activate()``d, and from then on every call of the model's UNet goes to its ``forward``; choosing another option
(or loading another checkpoint) ``deactivate()``s it first.

Our option does not build a second UNet (SDXL's is 2.6 GB in fp16): ``activate`` moves the loaded SDXL UNet back to
the GPU and swaps the 1-step weights into it in place (:mod:`hypersd.unet_weights`; the file may have diffusers or
ldm key names), keeping the replaced tensors on the CPU; ``forward`` runs the loaded UNet's original forward;
``deactivate`` puts the original tensors back.  The Lora extension keeps its own weight backups per layer, so they
are reset around each swap (else a LoRA change would bring back the wrong base weights).

The preset "hyper-sdxl-1step-unet" selects the option only for its own generations: :func:`select_for` in the
script's ``process`` (before WebUI's ``apply_unet``), :func:`restore_after` in ``postprocess``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from hypersd.catalog import CATALOG, CatalogEntry
from hypersd.presets import get_preset

log = logging.getLogger("hypersd")

#: The "SD Unet" label is the file's stem, so the plan's "expects Hyper-SDXL-1step-Unet.safetensors loaded" check
#: (which compares the file stem with opts.sd_unet) recognises it.
UNET_LABEL = "Hyper-SDXL-1step-Unet"
PRESET_ID = "hyper-sdxl-1step-unet"
PREVIOUS_ATTR = "hypersd_previous_sd_unet"
SDXL_NEEDED = (
    "Hyper-SD: the Hyper-SDXL 1-step UNet needs an SDXL checkpoint (e.g. sd_xl_base_1.0); "
    "load one, or set Settings → Stable Diffusion → SD Unet back to Automatic."
)


def unet_entry(catalog=CATALOG) -> CatalogEntry:
    wanted = get_preset(PRESET_ID, "sdxl").catalog_id
    return next(entry for entry in catalog if entry.id == wanted)


def reset_lora_backups(unet: Any, networks: Any | None = None) -> int:
    """Undo the Lora extension's per-layer changes and forget its backups (they would hold the other weights)."""
    networks = networks if networks is not None else sys.modules.get("networks")
    if networks is None:
        return 0
    count = 0
    for module in unet.modules():
        if (
            getattr(module, "network_weights_backup", None) is None
            and getattr(module, "network_bias_backup", None) is None
        ):
            continue
        networks.network_restore_weights_from_backup(module)
        networks.network_reset_cached_weight(module)
        count += 1
    return count


def make_classes(sd_unet: Any, find_file: Callable[[], str | None], host: Callable[[], Any]):
    """The SdUnetOption / SdUnet subclasses, built on the given ``modules.sd_unet`` (a stand-in in tests).

    ``find_file()`` gives the UNet file's path or None; ``host()`` returns an object with ``sd_model``, ``device``
    and ``missing_message`` (the sentence to show when the file is missing).
    """
    from hypersd.unet_weights import swap_from_safetensors

    class HyperSdxlUnet(sd_unet.SdUnet):
        def __init__(self, option):
            super().__init__()
            self.option = option
            self.__dict__["_unet"] = None  # not a submodule: the loaded model owns it
            self.__dict__["_swap"] = None
            self.__dict__["_error"] = None

        def activate(self):
            env = host()
            model = env.sd_model
            if not getattr(model, "is_sdxl", False):
                self._fail(SDXL_NEEDED)
            path = find_file()
            if path is None:
                self._fail(env.missing_message)
            unet = model.model.diffusion_model
            if not getattr(model, "lowvram", False):
                unet.to(env.device)  # apply_unet moved it to the CPU before activating us
            reset_lora_backups(unet)
            print(f"Hyper-SD: loading the 1-step UNet weights from {path}")
            self.__dict__["_swap"] = swap_from_safetensors(unet, path)
            self.__dict__["_unet"] = unet
            self.__dict__["_error"] = None

        def _fail(self, message: str):
            self.__dict__["_error"] = message
            raise RuntimeError(message)

        def forward(self, x, timesteps, context, *args, **kwargs):
            if self._swap is None:  # activate failed; WebUI will not call it again for the same option
                raise RuntimeError(self._error or "Hyper-SD: the 1-step UNet is not loaded.")
            return sd_unet.original_forward(self._unet, x, timesteps, context, *args, **kwargs)

        def deactivate(self):
            if self._swap is None:
                return
            reset_lora_backups(self._unet)
            restored = self._swap.restore()
            log.info("Hyper-SD: restored %d original UNet tensors", restored)
            self.__dict__["_swap"] = None
            self.__dict__["_unet"] = None

    class HyperSdxlUnetOption(sd_unet.SdUnetOption):
        label = UNET_LABEL
        model_name = None  # never chosen by "Automatic"

        def create_unet(self):
            return HyperSdxlUnet(self)

    return HyperSdxlUnetOption, HyperSdxlUnet


def preset_problem(sd_model: Any, manager: Any) -> str | None:
    """Why the 1-step UNet preset cannot run now (not SDXL, file missing), or None; cheap (no hashing)."""
    if not getattr(sd_model, "is_sdxl", False):
        return SDXL_NEEDED
    info = manager.inspect(unet_entry(manager.entries()), deep=False)
    if info.status != "present":
        from hypersd.models_view import missing_file_hint

        return missing_file_hint(manager, unet_entry(manager.entries()).id)
    return None


def select_for(p: Any, opts: Any) -> None:
    """Make WebUI use our UNet for this job only, as an override setting (call from ``before_process``).

    ``process_images`` stores the overridden options before the job and gives them back in its ``finally`` block,
    so the user's "SD Unet" comes back even when the job fails, and a settings save in between never persists ours
    (found in a real WebUI: a failed job followed by an options save kept the 1-step UNet selected for good).
    WebUI stores only keys already in ``opts.data``: the current value is put there first.
    """
    if "sd_unet" not in opts.data:
        default = opts.get_default("sd_unet") if hasattr(opts, "get_default") else None
        opts.data["sd_unet"] = default or "Automatic"
    if not hasattr(p, PREVIOUS_ATTR):
        setattr(p, PREVIOUS_ATTR, opts.data["sd_unet"])
    p.override_settings = {**(getattr(p, "override_settings", None) or {}), "sd_unet": UNET_LABEL}


def restore_after(p: Any, opts: Any) -> None:
    """A job that asked WebUI to keep its overrides (``override_settings_restore_afterwards`` false) still gives
    the user's "SD Unet" back: that override was ours, not theirs."""
    previous = getattr(p, PREVIOUS_ATTR, None)
    if previous is None:
        return
    if not getattr(p, "override_settings_restore_afterwards", True):
        opts.data["sd_unet"] = previous
    delattr(p, PREVIOUS_ATTR)


# ------------------------------------------------------------------------------------------------ WebUI wiring


def register(changes, script_callbacks) -> None:
    """Add our option to WebUI's "SD Unet" list (callbacks are cleared by WebUI on reload, so add them per load)."""
    from modules import devices, sd_unet, shared

    from hypersd.webui import models_panel

    def find_file() -> str | None:
        info = models_panel.get_manager().inspect(unet_entry(), deep=False)
        return info.path if info.status == "present" else None

    def host():
        return SimpleNamespace(
            sd_model=shared.sd_model,
            device=devices.device,
            missing_message=models_view_hint(models_panel.get_manager()),
        )

    option_class, _ = make_classes(sd_unet, find_file, host)

    def list_unets(unet_options: list) -> None:
        unet_options.append(option_class())

    script_callbacks.on_list_unets(list_unets, name="hypersd 1-step unet")

    def do():
        sd_unet.list_unets()  # WebUI listed them before our scripts loaded

        def undo():
            current = sd_unet.current_unet_option
            if current is not None and current.label == UNET_LABEL:
                sd_unet.apply_unet("None")  # give the original weights back before our code goes away
            sd_unet.unet_options[:] = [o for o in sd_unet.unet_options if o.label != UNET_LABEL]

        return undo

    changes.apply("sd-unet-option", do)


def models_view_hint(manager) -> str:
    from hypersd.models_view import missing_file_hint

    return missing_file_hint(manager, unet_entry().id)
