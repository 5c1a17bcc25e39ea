"""Register the TCD sampler in Forge through its ``sd_samplers.add_sampler()``.

Forge's ``add_sampler`` (``modules/sd_samplers.py``, June 2025) appends to ``all_samplers`` when the name is new,
rebinds ``all_samplers_map`` to a new dict and calls ``set_samplers()``.  There is no ``remove_sampler``, so the undo
mirrors it: the entry leaves ``all_samplers`` (the same list object ``samplers`` points to), the map is rebuilt the
way ``add_sampler`` builds it, ``set_samplers()`` runs.  Everything else (the class with gamma as eta, the schedules,
the gamma option) is A1111's code: Forge's ``KDiffusionSampler``, ``Sampler.initialize`` eta routing and
``sd_schedulers`` lists are the same.
"""

from __future__ import annotations

from typing import Any

from hypersd.webui import samplers as webui_samplers
from hypersd.webui.host import HostChanges


def register_tcd_sampler(host) -> Any:
    """Add the TCD sampler with ``add_sampler``; returns its undo function."""
    sd_samplers = host.sd_samplers
    name = webui_samplers.TCD_SAMPLER_NAME
    data = webui_samplers.tcd_sampler_data(host)
    # A stale entry (an earlier load whose unload never ran) would make add_sampler skip ours: drop it first.
    sd_samplers.all_samplers[:] = [s for s in sd_samplers.all_samplers if s.name != name]
    sd_samplers.add_sampler(data)
    webui_samplers.clear_sampler_cache(host)

    def undo():
        sd_samplers.all_samplers[:] = [s for s in sd_samplers.all_samplers if s is not data]
        sd_samplers.all_samplers_map = {x.name: x for x in sd_samplers.all_samplers}
        sd_samplers.set_samplers()
        webui_samplers.clear_sampler_cache(host)

    return undo


def register_all(host, changes: HostChanges) -> list[str]:
    return webui_samplers.register_all(host, changes, register_sampler=register_tcd_sampler)
