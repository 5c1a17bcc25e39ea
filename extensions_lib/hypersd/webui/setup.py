"""Entry point of the adapter, called once per (re)load by ``scripts/hyper_sd.py``."""

from __future__ import annotations

import logging

from hypersd.webui.host import CHANGES
from hypersd.webui.samplers import register_all, webui_host

log = logging.getLogger("hypersd")


def setup() -> None:
    from modules import script_callbacks

    host = webui_host()
    register_all(host, CHANGES)
    # WebUI clears its callbacks before re-importing scripts, so these are added once per load.
    script_callbacks.on_script_unloaded(unload, name="hypersd unload")
    script_callbacks.on_before_ui(register_xyz_axis, name="hypersd xyz axis")
    register_models(script_callbacks)


def register_models(script_callbacks, with_unet: bool = True) -> None:
    """The "Hyper-SD Models" and "Hyper-SD Train" tabs, our API route and (``with_unet``) the 1-step UNet in the
    "SD Unet" list."""
    from hypersd.webui import api_routes, models_panel, train_tab, unet

    api_routes.register(script_callbacks)
    models_panel.register(script_callbacks)
    train_tab.register(script_callbacks)
    if with_unet:
        unet.register(CHANGES, script_callbacks)


def register_xyz_axis() -> None:
    from modules import scripts

    from hypersd.webui.xyz import register_axis

    CHANGES.apply("xyz-axis", lambda: register_axis(scripts.scripts_data))


def unload() -> None:
    undone = CHANGES.undo_all()
    log.info("Hyper-SD: undid %s", ", ".join(undone) or "nothing")
