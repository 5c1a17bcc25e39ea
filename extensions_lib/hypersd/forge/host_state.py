"""What the accordion reads from Forge that A1111 does not have: FLUX.1-dev models.

Forge's engines (``backend/diffusion_engine/*.py``, June 2025) set ``is_sd1`` / ``is_sd2`` / ``is_sdxl`` / ``is_sd3``
like A1111's models, so :func:`hypersd.webui.host_state.model_base` reads those.  The ``Flux`` engine
(``backend/diffusion_engine/flux.py``) sets none of them; it sets ``use_distilled_cfg_scale`` for dev (guidance-
distilled, ``p.distilled_cfg_scale``) and not for schnell (its predictor has ``mu=1.0``).
"""

from __future__ import annotations

from typing import Any

from hypersd.catalog import FLUX_BASE
from hypersd.webui import host_state

FLUX_ENGINE = ("backend.diffusion_engine.flux", "Flux")  # module and class name of Forge's Flux engine
FLUX_SCHNELL = "flux-schnell"  # not a base any preset has: the plan says the model type is unknown


def is_forge_flux(sd_model: Any) -> bool:
    return any((c.__module__, c.__name__) == FLUX_ENGINE for c in type(sd_model).__mro__)


def model_base(sd_model: Any) -> str | None:
    """ "flux-dev" for Forge's Flux dev engine, "flux-schnell" for schnell, else what A1111's flags say."""
    if sd_model is not None and is_forge_flux(sd_model):
        return FLUX_BASE if getattr(sd_model, "use_distilled_cfg_scale", False) else FLUX_SCHNELL
    return host_state.model_base(sd_model)
