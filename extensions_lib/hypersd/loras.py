"""The LoRAs a plan may use: what WebUI lists (:class:`LoraInfo`), and how a plan looks one up (:class:`LoraLookup`).

A plan asks its lookup once per LoRA it needs.  The lookup tries the listed LoRAs by name, alias and known
aliases of our accelerator files; when the wanted file is still missing it lists the folder again (a file copied
in since WebUI listed it) and, for a catalog file with a sha256, recognises a copy under another name by its
bytes.  Both extra steps are callables the adapter passes in, so the planner stays pure and runs once per job.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from hypersd import loratags
from hypersd.catalog import FLUX_BASE, CatalogEntry
from hypersd.lora_metadata import base_from_model_version, has_hypersd_metadata, recipe_base
from hypersd.presets import strip_extension
from hypersd.train.layout import is_stage_lora_name

Loras = Mapping[str, "LoraInfo"] | Iterable["LoraInfo"] | None


@dataclasses.dataclass(frozen=True)
class LoraInfo:
    """One LoRA WebUI knows (from the Lora extension's ``available_networks``)."""

    name: str  # the file name without extension: what <lora:NAME> uses
    alias: str = ""  # ss_output_name, also accepted by WebUI in tags
    path: str = ""
    base: str | None = None  # "sd15" / "sdxl" / "sd2" / None (unknown); None: read ss_base_model_version
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)
    hash: str = ""  # WebUI's LoRA hash (sha256 after the safetensors header, "addnet"), full or short
    sha256: str = ""  # the whole file's sha256, when known
    mtime: float = 0.0  # file modification time (newest distilled LoRA first); 0 when unknown

    @property
    def model_base(self) -> str | None:
        return self.base or base_from_model_version(self.metadata.get("ss_base_model_version"))

    @classmethod
    def from_network_on_disk(cls, net: Any, sha256: str = "") -> LoraInfo:
        """From the Lora extension's ``NetworkOnDisk`` (extensions-builtin/Lora/network.py v1.10.1), duck-typed:
        ``name``, ``alias``, ``filename``, ``metadata``, ``hash`` and ``sd_version`` (an enum SD1/SD2/SDXL/Unknown,
        detected from ``ss_base_model_version`` / ``ss_v2``; "SD1" there means "has metadata", so it is trusted only
        when ``ss_base_model_version`` says so too)."""
        metadata = dict(getattr(net, "metadata", None) or {})
        version = getattr(getattr(net, "sd_version", None), "name", "")
        try:
            mtime = os.path.getmtime(getattr(net, "filename", "") or "")
        except OSError:
            mtime = 0.0
        return cls(
            name=net.name,
            alias=getattr(net, "alias", "") or "",
            path=getattr(net, "filename", "") or "",
            base={"SDXL": "sdxl", "SD2": "sd2", "Flux": FLUX_BASE}.get(version),  # "Flux": Forge's SdVersion only
            metadata=metadata,
            hash=getattr(net, "hash", "") or "",
            sha256=sha256,
            mtime=mtime,
        )


def _loras(available: Loras) -> list[LoraInfo]:
    if available is None:
        return []
    return list(available.values()) if isinstance(available, Mapping) else list(available)


def newest_distilled_lora(available: Loras, base: str | None) -> LoraInfo | None:
    """The most recently written LoRA with ``hypersd_*`` metadata for ``base`` (whole runs before stage files)."""
    candidates = []
    for info in _loras(available):
        if not has_hypersd_metadata(info.metadata):
            continue
        lora_base = recipe_base(info.metadata) or info.model_base
        if base is not None and lora_base not in (None, "", base):
            continue
        candidates.append((not is_stage_lora_name(info.name), info.mtime, info.name, info))
    return max(candidates, key=lambda c: c[:3])[3] if candidates else None


def find_lora(available: Loras, wanted: str, known_hashes: Iterable[str] = ()) -> LoraInfo | None:
    """The available LoRA for ``wanted`` (a file or tag name): by exact name or alias, then
    case-insensitively, then (for our known accelerator files) by any known alias, then by hash
    (``known_hashes``: sha256 / addnet hashes of the wanted file; a LoRA's hash may be a prefix)."""
    loras = _loras(available)
    stem = strip_extension(wanted)
    for match in (
        lambda i: stem in (i.name, i.alias),
        lambda i: stem.lower() in (i.name.lower(), i.alias.lower()),
    ):
        found = next((i for i in loras if match(i)), None)
        if found:
            return found
    known = loratags.known_lora(stem)
    if known is not None:
        found = next(
            (i for i in loras if known in (loratags.known_lora(i.name), loratags.known_lora(i.alias or i.name))),
            None,
        )
        if found:
            return found
    hashes = [h.lower() for h in known_hashes if h]
    for info in loras:
        for mine in (info.sha256.lower(), info.hash.lower()):
            if len(mine) >= 10 and any(h.startswith(mine) or mine.startswith(h) for h in hashes):
                return info
    return None


class LoraLookup:
    """How a plan finds its LoRA (see the module docstring); each extra step runs at most once per lookup.

    ``refresh()`` returns the folder listed again; ``recognise(entry)`` returns the path of a file whose sha256 is
    the catalog entry's (or None).  Both are optional: without them the lookup only reads ``loras``.
    """

    def __init__(
        self,
        loras: Loras,
        *,
        refresh: Callable[[], Loras] | None = None,
        recognise: Callable[[CatalogEntry], str | os.PathLike | None] | None = None,
    ):
        self._loras = _loras(loras)
        self._refresh = refresh
        self._recognise = recognise
        self._recognised: dict[str, LoraInfo | None] = {}

    @classmethod
    def of(cls, available: LoraLookup | Loras) -> LoraLookup:
        return available if isinstance(available, LoraLookup) else cls(available)

    @property
    def loras(self) -> tuple[LoraInfo, ...]:
        return tuple(self._loras)

    def find(self, wanted: str, entry: CatalogEntry | None = None) -> LoraInfo | None:
        """The LoRA for ``wanted``; ``entry`` is its catalog file, when it has one (its sha256 recognises copies)."""
        hashes = [entry.sha256] if entry is not None and entry.sha256 else []
        found = find_lora(self._loras, wanted, hashes)
        if found is None and self._refresh is not None:
            self._loras, self._refresh = _loras(self._refresh()), None
            found = find_lora(self._loras, wanted, hashes)
        if found is None and entry is not None and entry.sha256 and self._recognise is not None:
            if entry.id not in self._recognised:
                self._recognised[entry.id] = self._by_hash(entry)
            found = self._recognised[entry.id]
        return found

    def newest_distilled(self, base: str | None) -> LoraInfo | None:
        return newest_distilled_lora(self._loras, base)

    def _by_hash(self, entry: CatalogEntry) -> LoraInfo | None:
        path = self._recognise(entry)
        if not path:
            return None
        stem = strip_extension(os.path.basename(str(path)))
        info = next((i for i in self._loras if i.name == stem or (i.path and i.path == str(path))), None)
        return dataclasses.replace(info, sha256=entry.sha256 or "") if info else None
