"""What the running host can do, for the parts of the adapter that A1111 and Forge share.

The accordion, the X/Y/Z axis and ``process()`` are the same code in both WebUIs; they differ in which model types
the host runs (A1111: SD1.5/SDXL; Forge: also FLUX.1-dev), how the loaded model says its type, and whether the host
already skips the unconditional pass at CFG 1 (Forge's backend does; A1111 needs our ``cfg1`` patch).  The A1111
profile is the default; the Forge adapter swaps its own in through :class:`~hypersd.webui.host.HostChanges`, so an
unload restores the default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from hypersd.catalog import BASES, CATALOG, CatalogEntry
from hypersd.presets import preset_ids_for
from hypersd.webui import host_state
from hypersd.webui.host import HostChanges


@dataclasses.dataclass(frozen=True)
class HostProfile:
    name: str  # said in the Train tab and the logs
    bases: tuple[str, ...]  # the model types this host runs: their presets get buttons
    model_base: Callable[[Any], str | None]  # shared.sd_model -> "sd15" / "sdxl" / "flux-dev" / ...
    cfg1_patch: bool  # install hypersd.webui.cfg1 (the host always runs the uncond pass)
    hidden_presets: tuple[str, ...] = ()  # presets this host cannot run although their model type runs
    catalog: tuple[CatalogEntry, ...] = CATALOG  # the files of the Models tab and of recognition by hash
    #: a folder the host ships with the CLIP tokenizers (tokenizer/, tokenizer_2/), relative to the WebUI folder: the
    #: engine needs them for single-file checkpoints.  None: the engine looks in the local Hugging Face cache.
    tokenizer_dir: str | None = None

    @property
    def preset_ids(self) -> tuple[str, ...]:
        return tuple(i for i in preset_ids_for(self.bases) if i not in self.hidden_presets)


A1111 = HostProfile("AUTOMATIC1111 WebUI", BASES, host_state.model_base, cfg1_patch=True)
_CURRENT = [A1111]


def current() -> HostProfile:
    return _CURRENT[0]


def use(profile: HostProfile, changes: HostChanges) -> bool:
    """Make ``profile`` the current one until ``changes`` is undone."""

    def do():
        _CURRENT[0] = profile

        def undo():
            _CURRENT[0] = A1111

        return undo

    return changes.apply("profile", do)
