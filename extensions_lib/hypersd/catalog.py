"""The files our presets use: where each comes from on the Hugging Face hub, its size and its sha256.

Every value below is copied from ``docs/CATALOG_FACTS.md`` (gathered offline from named public sources; the
hub itself could not be reached).  Nothing is invented: a missing value is ``None``.

How much a hash is trusted (``verified``):

- ``"A"``: at least one source ties this sha256 to the exact repo and file name.  A download whose bytes hash
  differently is refused (the temporary file is deleted).
- ``"B"`` / ``"B+"``: only one source (darkshapes/MIR, keyed by step count, so the file name is inferred), or a
  second source naming a renamed copy.  A mismatch is still refused by default, because a wrong file is worse
  than a missing one, but the message says the catalog value is unconfirmed and how to accept the file anyway
  (``allow_unverified=True``) — unless the hub's own ``X-Linked-Etag`` (the LFS sha256) matched the bytes, which
  settles it in the file's favour (see :mod:`hypersd.download`).
- ``None``: no hash known.  The file downloads with a warning and the computed hash is reported.

Sizes: ``size_exact=True`` when a source names this file's size; "family" sizes (one size per model family)
are only used for progress and disk-space estimates and to pick candidates when looking for a renamed copy,
never to reject a file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

KINDS = ("lora", "unet", "checkpoint")
BASES = ("sd15", "sdxl")  # what AUTOMATIC1111 WebUI runs; the presets' SD rows are built over these
FLUX_BASE = "flux-dev"  # FLUX.1-dev (not schnell: the Hyper-FLUX LoRAs are for dev): Forge runs it, A1111 cannot
MODEL_BASES = (*BASES, FLUX_BASE)
VERIFIED_LEVELS = ("A", "B", "B+")
DEFAULT_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    repo: str
    filename: str  # path inside the hub repo
    local_filename: str  # name in WebUI's folder (COMMON.md); peers' generic names are replaced
    kind: str  # "lora" | "unet" | "checkpoint"
    base: str  # "sd15" | "sdxl" | "flux-dev"
    size: int | None
    size_exact: bool  # False: a per-family size, an estimate only
    sha256: str | None
    verified: str | None  # "A" | "B" | "B+" | None, see the module docstring
    sources: str
    revision: str = "main"
    aliases: tuple[str, ...] = ()  # other names copies of this file go by (<lora:NAME> tags, renamed downloads)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Hyper-SD: catalog entry {self.id}: kind {self.kind!r} is not one of {KINDS}.")
        if self.base not in MODEL_BASES:
            raise ValueError(f"Hyper-SD: catalog entry {self.id}: base {self.base!r} is not one of {MODEL_BASES}.")
        if self.sha256 is not None:
            if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
                raise ValueError(f"Hyper-SD: catalog entry {self.id}: sha256 must be 64 lower-case hex digits.")
            if self.verified not in VERIFIED_LEVELS:
                raise ValueError(f"Hyper-SD: catalog entry {self.id}: a sha256 needs a level in {VERIFIED_LEVELS}.")
        elif self.verified is not None:
            raise ValueError(f"Hyper-SD: catalog entry {self.id}: level {self.verified!r} without a sha256.")
        if self.size is None and self.size_exact:
            raise ValueError(f"Hyper-SD: catalog entry {self.id}: size_exact without a size.")

    @property
    def hash_is_confirmed(self) -> bool:
        """True when the sha256 is tied to this exact file by a named source (level "A")."""
        return self.sha256 is not None and self.verified == "A"

    @property
    def exact_size(self) -> int | None:
        """The size when a source names it for this file, else None (a family size is not exact)."""
        return self.size if self.size_exact else None


def file_url(entry: CatalogEntry, endpoint: str = DEFAULT_ENDPOINT) -> str:
    """The hub's download URL ``{endpoint}/{repo}/resolve/{revision}/{filename}`` (as ``hf_hub_url`` builds it)."""
    return f"{endpoint.rstrip('/')}/{entry.repo}/resolve/{quote(entry.revision, safe='')}/{quote(entry.filename)}"


def page_url(entry: CatalogEntry, endpoint: str = DEFAULT_ENDPOINT) -> str:
    """The file's page on the hub, for people (the manual step in error messages links both)."""
    return f"{endpoint.rstrip('/')}/{entry.repo}/blob/{quote(entry.revision, safe='')}/{quote(entry.filename)}"


_HYPER = "ByteDance/Hyper-SD"
_LIGHTNING = "ByteDance/SDXL-Lightning"
_SD15_FAMILY_SIZE = 269_127_064
_SDXL_FAMILY_SIZE = 787_359_648
_FLUX_FAMILY_SIZE = 1_388_026_440
_MIR = "darkshapes/MIR mir/mir.json"
_FAMILY = "size: lora_peek family table (file id 9809631077)"


def _hyper(
    file: str,
    base: str,
    size: int | None,
    size_exact: bool,
    sha: str | None,
    level: str | None,
    sources: str,
    kind: str = "lora",
    aliases: tuple[str, ...] = (),
) -> CatalogEntry:
    entry_id = file.removesuffix(".safetensors").lower()
    return CatalogEntry(
        entry_id, _HYPER, file, file, kind, base, size, size_exact, sha, level, sources, aliases=aliases
    )


CATALOG: tuple[CatalogEntry, ...] = (
    # --- ByteDance/Hyper-SD, SD1.5 ---
    _hyper(
        "Hyper-SD15-1step-lora.safetensors", "sd15", _SD15_FAMILY_SIZE, False,
        "a04fd9a535c1e56d38f7590ee72a13fd5ca0409853b4fff021e5a9482cf1ca3b", "A",
        f"nixified-ai/flake models.nix (SRI sha256-oE/ZpTXB5W0491kO5yoT/VygQJhTtP/wIeWpSCzxyjs=); {_MIR}; {_FAMILY}",
    ),
    _hyper(
        "Hyper-SD15-2steps-lora.safetensors", "sd15", _SD15_FAMILY_SIZE, False,
        "2f26dcc1d883feb07557a552315baae2ca2a04ac08556b08a355a244547e8c3a", "B",
        f"{_MIR} (SD1 hyper, 2 steps, cfg 0; name inferred); {_FAMILY}",
    ),
    _hyper(
        "Hyper-SD15-4steps-lora.safetensors", "sd15", _SD15_FAMILY_SIZE, False,
        "c5dd058616461ed5053e2b14eec4dbe3fa0eea3b13688642f6d6c80ea2ba5958", "B",
        f"{_MIR} (SD1 hyper, 4 steps, cfg 0; name inferred); {_FAMILY}",
    ),
    _hyper(
        "Hyper-SD15-8steps-lora.safetensors", "sd15", _SD15_FAMILY_SIZE, False,
        "91fc3186236e956d64dbb4357f2e120c69b968b78af7d2db9884a5ca74d3cd13", "B",
        f"{_MIR} (SD1 hyper, 8 steps, cfg 0; name inferred); {_FAMILY}",
    ),
    _hyper(
        "Hyper-SD15-8steps-CFG-lora.safetensors", "sd15", 269_127_064, True,
        "f6123d5b950d5250ab6c33600e27f4dcf71b3099ebf888685e01e9e8117ce482", "A",
        f"nixified-ai/flake models.nix (SRI sha256-9hI9W5UNUlCrbDNgDif03PcbMJnr+IhoXgHp6BF85II=); {_MIR}; "
        "size: a setup doc naming the file (file id 65737548510)",
    ),
    _hyper(
        "Hyper-SD15-12steps-CFG-lora.safetensors", "sd15", _SD15_FAMILY_SIZE, False,
        "64b98437383537cd968fda6f87a05c33160ece9c79ff4757949a1e212ff78361", "B",
        f"{_MIR} (SD1 hyper, 12 steps; name inferred); {_FAMILY}",
    ),
    # --- ByteDance/Hyper-SD, SDXL ---
    _hyper(
        "Hyper-SDXL-1step-lora.safetensors", "sdxl", _SDXL_FAMILY_SIZE, False,
        "c912df184c5116792d2c604d26c6bc2aa916685f4a793755255cda1c43a3c78a", "A",
        f"CMKFlow/cmk_nodes scripts/check_cmk_resources.py (expected_sha256, official URL); {_MIR}; {_FAMILY}",
    ),
    _hyper(
        "Hyper-SDXL-2steps-lora.safetensors", "sdxl", _SDXL_FAMILY_SIZE, False,
        "69b25c0187ced301c3603c599c0bc509ac99b8ac34db89a2aecc3d5f77a35187", "B",
        f"{_MIR} (SDXL hyper, 2 steps; name inferred); {_FAMILY}",
    ),
    _hyper(
        "Hyper-SDXL-4steps-lora.safetensors", "sdxl", _SDXL_FAMILY_SIZE, False,
        "12f81a27d00a751a40d68fd15597091896c5a90f3bd632fb6c475607cbdad76e", "B+",
        f"{_MIR} (SDXL hyper, 4 steps); same hash and size 787,359,648 for Fooocus' renamed copy "
        "sdxl_hyper_sd_4step_lora.safetensors in SimpleSDXL models_info (file ids 5309084367, 58580662536)",
        aliases=("sdxl_hyper_sd_4step_lora",),  # Fooocus' copy, same sha256
    ),
    _hyper(
        "Hyper-SDXL-8steps-lora.safetensors", "sdxl", 787_359_648, True,
        "ca689190e8c46038550384b5675488526cfe5a40d35f82b27acb75c100f417c1", "A",
        f"SimpleSDXL models_info entry loras/Hyper-SDXL-8steps-lora.safetensors (file id 58580662536); {_MIR}",
    ),
    _hyper(
        "Hyper-SDXL-8steps-CFG-lora.safetensors", "sdxl", 825_798_408, True,
        "55b51334c85061afff5eff7c550b61963c8b8607a5868bbe4f26db49374719b1", "A",
        "nixified-ai/flake models.nix (SRI sha256-VbUTNMhQYa//Xv98VQthljyLhgelhou+TybbSTdHGbE=); "
        f"a project spec with path, size and SHA256 (file id 62427245253); {_MIR}",
    ),
    _hyper(
        "Hyper-SDXL-12steps-CFG-lora.safetensors", "sdxl", 825_798_408, True,
        "0b97f447b5878323a28fbe7c51ba7acebd21f4d77552ba77b04b11c8911825b6", "A",
        f"a project spec with path, size and SHA256 (file id 62427245253); {_MIR}",
    ),
    _hyper(
        "Hyper-SDXL-1step-Unet.safetensors", "sdxl", None, False, None, None,
        'no hash found; size only as prose ("10.3 GB", file id 67483886858)',
        kind="unet",
    ),
    # --- peers ---
    CatalogEntry(
        "sdxl-lightning-2step-lora", _LIGHTNING, "sdxl_lightning_2step_lora.safetensors",
        "sdxl_lightning_2step_lora.safetensors", "lora", "sdxl", None, False,
        "04fafc778385b24144498a8247498ae4fb7a69f702ea0566bdce2845a31fcc43", "A",
        "nixified-ai/flake models.nix (SRI sha256-BPr8d4OFskFESYqCR0mK5Pt6afcC6gVmvc4oRaMfzEM=); single source",
    ),
    CatalogEntry(
        "sdxl-lightning-4step-lora", _LIGHTNING, "sdxl_lightning_4step_lora.safetensors",
        "sdxl_lightning_4step_lora.safetensors", "lora", "sdxl", 393_854_592, True,
        "bf56cf2657efb15e465d81402ed481d1e11c4677e4bcce1bc11fe71ad8506b79", "A",
        "finegrain-ai/refiners src/refiners/conversion/models/loras.py (rev c9a24f48); a squid store-id script "
        "quoting the LFS CDN URL ending in this oid (file id 21780511900); size: SimpleSDXL models_info",
    ),
    CatalogEntry(
        "sdxl-lightning-8step-lora", _LIGHTNING, "sdxl_lightning_8step_lora.safetensors",
        "sdxl_lightning_8step_lora.safetensors", "lora", "sdxl", None, False, None, None,
        "no size or hash found",
    ),
    CatalogEntry(
        "lcm-lora-sdv1-5", "latent-consistency/lcm-lora-sdv1-5", "pytorch_lora_weights.safetensors",
        "lcm-lora-sdv1-5.safetensors", "lora", "sd15", 134_621_556, True,
        "8f90d840e075ff588a58e22c6586e2ae9a6f7922996ee6649a7f01072333afe4", "A",
        "many download manifests (file ids 69708510670 [rev cf2fced5], 59750973256, 71604544884, 60987207440, "
        "60789732272, 61949606812, 58019874072, 55071618484)",
        aliases=("lcm-lora-sd15", "lcm_lora_sd15", "LCM_LoRA_SD15", "lcm-lora-sd1.5"),
    ),
    CatalogEntry(
        "lcm-lora-sdxl", "latent-consistency/lcm-lora-sdxl", "pytorch_lora_weights.safetensors",
        "lcm-lora-sdxl.safetensors", "lora", "sdxl", 393_855_224, True,
        "a764e6859b6e04047cd761c08ff0cee96413a8e004c9f07707530cd776b19141", "A",
        "finegrain-ai/refiners loras.py (rev a18548dd); file ids 60572312775, 70980655974, 61949606812 "
        f"(size and hash), 41329927919, 66989674870; {_MIR}",
        aliases=("lcm_lora_sdxl", "sdxl_lcm_lora", "LCM_LoRA_SDXL"),
    ),
    CatalogEntry(
        "tcd-sd15-lora", "h1t/TCD-SD15-LoRA", "pytorch_lora_weights.safetensors",
        "TCD-SD15-LoRA.safetensors", "lora", "sd15", None, False,
        "eaecb24a1cda4411eab67275b1d991071216ac93693e8fa0c9226c9df0386232", "B",
        f"{_MIR} only, and conflicting: MIR also lists this hash under lcm-lora-sdv1-5",
        aliases=("tcd_sd15", "tcd-lora-sd15", "tcd_sd15_lora"),
    ),
    CatalogEntry(
        "tcd-sdxl-lora", "h1t/TCD-SDXL-LoRA", "pytorch_lora_weights.safetensors",
        "TCD-SDXL-LoRA.safetensors", "lora", "sdxl", None, False,
        "2c777bc60abf41d3eb0fe405d23d73c280a020eea5adf97a82a141592c33feba", "B",
        f"{_MIR} (repo-level entry; the repo has one weight file); single source",
        aliases=("tcd_sdxl", "tcd-lora-sdxl", "tcd_sdxl_lora"),
    ),
    CatalogEntry(
        "dmd2-sdxl-4step-lora", "tianweiy/DMD2", "dmd2_sdxl_4step_lora.safetensors",
        "dmd2_sdxl_4step_lora.safetensors", "lora", "sdxl", 787_359_616, True,
        "a374289e9446d7f14d2037c4b3770756b7b52c292142a691377c3c755010a1bb", "A",
        "a licence-provenance note comparing a local sha256 and size with the HF LFS oid (file id 58093189863); "
        f"{_MIR} (DMD2 entry, 2nd hash)",
        aliases=("dmd2_sdxl_4step_lora_fp16", "dmd2-sdxl-4step"),
    ),
    CatalogEntry(
        "sdxl-turbo-fp16", "stabilityai/sdxl-turbo", "sd_xl_turbo_1.0_fp16.safetensors",
        "sd_xl_turbo_1.0_fp16.safetensors", "checkpoint", "sdxl", 6_938_081_905, True,
        "e869ac7d6942cb327d68d5ed83a40447aadf20e0c3358d98b2cc9e270db0da26", "A",
        "a HF-model catalog in TypeScript (file id 62908613244, size + hash); file ids 59337131857 (rev cf0e5cbf), "
        "70954698205 (rev 71153311), 11784931249, 63513491635, 68902311550, 48484672119",
    ),
)  # fmt: skip

#: The Hyper-FLUX.1-dev LoRAs: a separate table because only Forge runs FLUX.1-dev (A1111's Models tab, hash
#: recognition and downloads keep to :data:`CATALOG`).  Their hashes are MIR's only (level "B", names inferred).
FLUX_CATALOG: tuple[CatalogEntry, ...] = tuple(
    _hyper(
        f"Hyper-FLUX.1-dev-{n}steps-lora.safetensors", FLUX_BASE, _FLUX_FAMILY_SIZE, False, sha, "B",
        f"{_MIR} (flux-1-dev hyper, {n} steps; name inferred); {_FAMILY}",
    )
    for n, sha in (
        (8, "e0ab0fdf569cd01a382f19bd87681f628879dea7ad51fe5a3799b6c18c7b2d03"),
        (16, "6461f67dfc1a967ae60344c3b3f350877149ccab758c273cc37f5e8a87b5842e"),
    )
)  # fmt: skip
ALL_CATALOG = CATALOG + FLUX_CATALOG

_BY_ID = {entry.id: entry for entry in ALL_CATALOG}


def get_entry(entry_id: str, catalog: Iterable[CatalogEntry] = ALL_CATALOG) -> CatalogEntry:
    """The entry with this id; a clear error listing the known ids otherwise."""
    by_id = _BY_ID if catalog is ALL_CATALOG else {entry.id: entry for entry in catalog}
    try:
        return by_id[entry_id]
    except KeyError:
        raise KeyError(f"Hyper-SD: no catalog entry {entry_id!r}; known: {', '.join(sorted(by_id))}.") from None


def entry_for_local_file(local_filename: str, catalog: Iterable[CatalogEntry] = CATALOG) -> CatalogEntry | None:
    """The entry whose local file name is this one (case-insensitive, as Windows and WebUI's Lora list treat it)."""
    wanted = local_filename.lower()
    return next((e for e in catalog if e.local_filename.lower() == wanted), None)


def entry_for_sha256(sha256: str, catalog: Iterable[CatalogEntry] = CATALOG) -> CatalogEntry | None:
    """The entry whose catalog hash is this one, whatever the file is called locally."""
    wanted = sha256.lower()
    return next((e for e in catalog if e.sha256 == wanted), None)
