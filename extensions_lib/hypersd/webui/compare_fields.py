"""The txt2img/img2img components the accordion reads (by elem_id suffix), and handlers wired once they exist.

WebUI v1.10.1 builds the accordions between the sampler and the size, CFG and seed boxes (``ui_reorder_list``), so a
handler that reads the width or the seed is wired from ``after_component``, once every box it reads was built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

MAIN_FIELDS = ("prompt", "neg_prompt", "seed", "width", "height", "steps", "sampling", "scheduler", "cfg_scale")


class LateWiring:
    """Handlers waiting for the tab's components: each ``wire(*components)`` runs once, when all its names are found."""

    def __init__(self) -> None:
        self.found: dict[str, Any] = {}
        self._pending: list[tuple[tuple[str, ...], Callable[..., None]]] = []

    def when_built(self, names: Iterable[str], wire: Callable[..., None]) -> None:
        self._pending.append((tuple(names), wire))
        self._flush()

    def built(self, name: str, component: Any) -> None:
        self.found[name] = component
        self._flush()

    @property
    def waiting(self) -> tuple[tuple[str, ...], ...]:
        """The names each handler still waits for (empty once all are wired)."""
        return tuple(tuple(n for n in names if n not in self.found) for names, _ in self._pending)

    def _flush(self) -> None:
        ready = [item for item in self._pending if all(n in self.found for n in item[0])]
        self._pending = [item for item in self._pending if item not in ready]
        for names, wire in ready:
            wire(*(self.found[n] for n in names))
