"""Reversible changes to the host (WebUI), keyed by name.

Every change we make to WebUI (a sampler, a schedule, an option, an X/Y/Z axis …) goes through
one :class:`HostChanges` registry: applying a name twice does nothing, and :meth:`undo_all`
reverts everything in reverse order.  WebUI calls our ``on_script_unloaded`` callback before it
re-imports the scripts ("Apply and restart UI"), so a reload leaves exactly one copy of each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("hypersd")


class HostChanges:
    def __init__(self) -> None:
        self._undo: dict[str, Callable[[], None]] = {}

    def apply(self, name: str, do: Callable[[], Callable[[], None]]) -> bool:
        """Run ``do`` (which returns its own undo function) unless ``name`` is applied already."""
        if name in self._undo:
            return False
        self._undo[name] = do()
        return True

    def is_applied(self, name: str) -> bool:
        return name in self._undo

    def names(self) -> list[str]:
        return list(self._undo)

    def undo(self, name: str) -> bool:
        undo = self._undo.pop(name, None)
        if undo is None:
            return False
        undo()
        return True

    def undo_all(self) -> list[str]:
        """Undo every change, newest first; an undo that fails is logged and the rest still run."""
        undone = []
        for name in reversed(list(self._undo)):
            undo = self._undo.pop(name)
            try:
                undo()
                undone.append(name)
            except Exception:  # noqa: BLE001 - one broken undo must not leave the others applied
                log.exception("Hyper-SD: could not undo host change %r", name)
        return undone


#: The one registry of this process (WebUI shares one interpreter between reloads).
CHANGES = HostChanges()
