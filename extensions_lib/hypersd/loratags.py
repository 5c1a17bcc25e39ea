"""``<lora:…>`` tags in prompts: find them, map them to known accelerator files, add one without duplicates.

The syntax is WebUI v1.10.1's extra-network syntax (``modules/extra_networks.py``): every match
of ``<(\\w+):([^>]+)>`` anywhere in the prompt (prompt-editing ``[a:b:0.5]`` and alternation
``[a|b]`` brackets do not matter: extra networks are cut out before those are parsed) whose
network is ``lora`` (or its alias ``lyco``).  The arguments split on ``:``; an argument with
one ``=`` is named (``te=``, ``unet=``, ``dyn=``).  As in the built-in Lora extension
(``extra_networks_lora.py``): TE weight = 2nd positional (default 1), UNet weight = 3rd
positional (default: the TE weight), named ``te``/``unet`` override them.

Names map to the files of :data:`hypersd.presets.ALL_PRESETS` through a normalised key
(case-insensitive; extension, punctuation, a trailing "lora" ignored; "steps" = "step"), so
``Hyper-SDXL-4step``, ``Hyper-SDXL-4steps-lora`` and ``hyper_sdxl_4steps.safetensors`` are one
file, plus the known renamed copies each catalog entry lists (``CatalogEntry.aliases``).
"""

from __future__ import annotations

import dataclasses
import functools
import re

from hypersd.catalog import entry_for_local_file
from hypersd.presets import ALL_PRESETS, strip_extension

#: ``modules/extra_networks.py`` v1.10.1: ``re_extra_net = re.compile(r"<(\w+):([^>]+)>")``.
RE_EXTRA_NET = re.compile(r"<(\w+):([^>]+)>")
LORA_NETWORKS = ("lora", "lyco")  # the Lora extension registers "lyco" as an alias


@functools.cache
def _aliases(file: str) -> tuple[str, ...]:
    """Known renamed copies of one of our files (the catalog entry's ``aliases``)."""
    entry = entry_for_local_file(file)
    return entry.aliases if entry is not None else ()


def name_key(name: str) -> str:
    """Normalised key of a LoRA name: ``Hyper-SDXL-4steps-lora.safetensors`` → ``hypersdxl4step``."""
    key = re.sub(r"[^a-z0-9]", "", strip_extension(name.strip()).lower())
    key = re.sub(r"(\d)steps", r"\1step", key)
    if key.endswith("lora") and len(key) > 4:
        key = key[: -len("lora")]
    return key


@dataclasses.dataclass(frozen=True)
class KnownLora:
    """A file of the preset table: its local name, base and the presets that use it (table order)."""

    file: str
    base: str
    preset_ids: tuple[str, ...]

    @property
    def stem(self) -> str:
        return strip_extension(self.file)


def _known_loras() -> dict[str, KnownLora]:
    by_file: dict[str, KnownLora] = {}
    for row in ALL_PRESETS:
        if row.lora_file is None:
            continue
        known = by_file.get(row.lora_file)
        ids = (known.preset_ids if known else ()) + (row.id,)
        by_file[row.lora_file] = KnownLora(row.lora_file, row.base, tuple(dict.fromkeys(ids)))
    return by_file


KNOWN_LORAS: dict[str, KnownLora] = _known_loras()


def _alias_index() -> dict[str, KnownLora]:
    index: dict[str, KnownLora] = {}
    for file, known in KNOWN_LORAS.items():
        for name in (file, *_aliases(file)):
            key = name_key(name)
            if key in index and index[key] is not known:  # a table edit made two files collide
                raise RuntimeError(f"Hyper-SD: the LoRA names {index[key].file} and {file} normalise alike")
            index[key] = known
    return index


_BY_KEY = _alias_index()


def known_lora(name: str) -> KnownLora | None:
    """The known accelerator file a tag name means (by name or alias, case-insensitive), or None."""
    return _BY_KEY.get(name_key(name))


@dataclasses.dataclass(frozen=True)
class FoundTag:
    """One ``<lora:…>`` tag in a prompt."""

    text: str  # the whole tag as written
    start: int
    end: int
    network: str  # "lora" or "lyco"
    name: str
    te_weight: float | None  # None: not a number (WebUI would fail on it)
    unet_weight: float | None
    known: KnownLora | None  # the accelerator file it means, if any

    @property
    def weight(self) -> float | None:
        """One weight for the tag: the UNet's (what distillation LoRAs mostly change)."""
        return self.unet_weight


def _float(text: str | None, default: float | None) -> float | None:
    if text is None:
        return default
    try:
        return float(text)
    except ValueError:
        return None


def parse_tag_args(args: str) -> tuple[str, float | None, float | None]:
    """``"NAME:0.8:0.5"`` → (name, te, unet), following ``ExtraNetworkParams`` and the Lora extension."""
    positional: list[str] = []
    named: dict[str, str] = {}
    for item in args.split(":"):
        parts = item.split("=", 2)
        if len(parts) == 2:
            named[parts[0]] = parts[1]
        else:
            positional.append(item)
    name = positional[0] if positional else ""
    te = _float(positional[1] if len(positional) > 1 else None, 1.0)
    te = _float(named.get("te"), te) if "te" in named else te
    unet = _float(positional[2] if len(positional) > 2 else None, te)
    unet = _float(named.get("unet"), unet) if "unet" in named else unet
    return name, te, unet


def find_lora_tags(prompt: str) -> list[FoundTag]:
    """Every ``<lora:…>``/``<lyco:…>`` tag in ``prompt``, known or not, in order."""
    tags = []
    for match in RE_EXTRA_NET.finditer(prompt):
        network = match.group(1)
        if network not in LORA_NETWORKS:
            continue
        name, te, unet = parse_tag_args(match.group(2))
        tags.append(FoundTag(match.group(0), match.start(), match.end(), network, name, te, unet, known_lora(name)))
    return tags


def find_hyper_tags(prompt: str) -> list[FoundTag]:
    """The tags in ``prompt`` that name a known accelerator LoRA (Hyper-SD or a peer)."""
    return [t for t in find_lora_tags(prompt) if t.known is not None]


def format_weight(weight: float) -> str:
    return format(float(weight), ".4g")


def lora_tag(name: str, weight: float) -> str:
    return f"<lora:{name}:{format_weight(weight)}>"


def _equivalence(names) -> tuple[set[str], set[str]]:
    """Exact names and normalised keys that count as "the same LoRA" as any of ``names``."""
    # Loose (normalised) matching only for the files we know: two user LoRAs "style-a" and "style_a"
    # may well be different files, so for those only the exact names count.
    exact, keys = set(names), set()
    for known in {known_lora(n) for n in names} - {None}:
        keys.update(name_key(a) for a in (known.file, *_aliases(known.file)))
    return exact, keys


def _is_equivalent(tag: FoundTag, names: set[str], keys: set[str]) -> bool:
    return tag.name in names or name_key(tag.name) in keys


def remove_lora_tags(prompt: str, names: tuple[str, ...] | list[str]) -> str:
    """``prompt`` without the tags naming any of ``names`` (exactly, or by normalised key/alias)."""
    exact, keys = _equivalence(names)
    out, last = [], 0
    for tag in find_lora_tags(prompt):
        if _is_equivalent(tag, exact, keys):
            out.append(prompt[last : tag.start])
            last = tag.end
    out.append(prompt[last:])
    return "".join(out)


def add_lora_tag(prompt: str, name: str, weight: float, aliases: tuple[str, ...] | list[str] = ()) -> str:
    """``prompt`` with exactly one ``<lora:name:weight>``.

    A tag that means the same file (``name``, any of ``aliases``, or any known alias of the same
    accelerator file) is replaced in place by the canonical tag (the first one) or removed (the
    others); if there is none the tag is appended.  Calling it again changes nothing.
    """
    tag_text = lora_tag(name, weight)
    exact, keys = _equivalence([name, *aliases])
    out, last, placed = [], 0, False
    for tag in find_lora_tags(prompt):
        if _is_equivalent(tag, exact, keys):
            out.append(prompt[last : tag.start])
            if not placed:
                out.append(tag_text)
                placed = True
            last = tag.end
    out.append(prompt[last:])
    result = "".join(out)
    if placed:
        return result
    if result and not result[-1].isspace():
        result += " "
    return result + tag_text
