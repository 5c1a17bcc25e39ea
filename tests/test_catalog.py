import base64
import re
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from hypersd.catalog import (
    CATALOG,
    CatalogEntry,
    entry_for_local_file,
    entry_for_sha256,
    file_url,
    get_entry,
    page_url,
)
from hypersd.presets import catalog_entries

FACTS = Path("/work/shared/docs/CATALOG_FACTS.md")

# Names fixed in the project's common notes (COMMON.md): the local file names our presets load.
FIXED_LOCAL_NAMES = {
    "lcm-lora-sdv1-5.safetensors",
    "lcm-lora-sdxl.safetensors",
    "TCD-SD15-LoRA.safetensors",
    "TCD-SDXL-LoRA.safetensors",
    "sdxl_lightning_2step_lora.safetensors",
    "sdxl_lightning_4step_lora.safetensors",
    "sdxl_lightning_8step_lora.safetensors",
    "dmd2_sdxl_4step_lora.safetensors",
    "Hyper-SDXL-1step-Unet.safetensors",
    "sd_xl_turbo_1.0_fp16.safetensors",
}
PRESET_IDS = {
    "hyper-1step", "hyper-2step", "hyper-4step", "hyper-8step", "hyper-cfg-8step", "hyper-cfg-12step",
    "hyper-unified-tcd", "hyper-sdxl-1step-unet", "lightning-2step", "lightning-4step", "lightning-8step",
    "lcm-lora", "tcd-lora", "turbo", "dmd2", "house-fast", "distilled",
}  # fmt: skip


def test_nixified_ai_sri_values_decode_to_the_catalog_hex():
    """An independent re-derivation: the SRI base64 strings (quoted from nixified-ai) are sha256 digests."""
    sri = {
        "Hyper-SD15-1step-lora.safetensors": "oE/ZpTXB5W0491kO5yoT/VygQJhTtP/wIeWpSCzxyjs=",
        "Hyper-SD15-8steps-CFG-lora.safetensors": "9hI9W5UNUlCrbDNgDif03PcbMJnr+IhoXgHp6BF85II=",
        "Hyper-SDXL-8steps-CFG-lora.safetensors": "VbUTNMhQYa//Xv98VQthljyLhgelhou+TybbSTdHGbE=",
        "sdxl_lightning_2step_lora.safetensors": "BPr8d4OFskFESYqCR0mK5Pt6afcC6gVmvc4oRaMfzEM=",
    }
    for local_name, value in sri.items():
        digest = base64.b64decode(value)
        assert len(digest) == 32
        entry = entry_for_local_file(local_name)
        assert entry is not None and entry.sha256 == digest.hex(), local_name
        assert value in entry.sources  # the source text quotes the value it came from


@pytest.mark.skipif(not FACTS.is_file(), reason="the shared facts document is not on this machine")
def test_every_value_is_copied_from_the_facts_table():
    """Each entry's repo, hub file, size and sha256 appear on one row of CATALOG_FACTS.md, with the same level."""
    rows = [line for line in FACTS.read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    for entry in CATALOG:
        row = next((r for r in rows if r.startswith(f"| {entry.repo} | {entry.filename} |")), None)
        assert row is not None, entry.id
        cells = [c.strip() for c in row.strip("|").split("|")]
        size_cell, sha_cell = cells[3], cells[4]
        if entry.size is None:
            assert not re.match(r"^[\d,]+", size_cell), entry.id
        else:
            assert size_cell.startswith(f"{entry.size:,}"), entry.id
            assert entry.size_exact == ("family" not in size_cell), entry.id
        if entry.sha256 is None:
            assert not re.search(r"[0-9a-f]{64}", sha_cell), entry.id
        else:
            assert f"`{entry.sha256}`" in sha_cell, entry.id
            level = re.search(r"\*\*\((A|B\+?)", sha_cell)
            assert level is not None and level.group(1) == entry.verified, entry.id


def test_every_preset_that_needs_a_file_has_one_per_base():
    needs_both_bases = ["hyper-1step", "hyper-2step", "hyper-4step", "hyper-8step", "hyper-cfg-8step",
                        "hyper-cfg-12step", "hyper-unified-tcd", "lcm-lora", "tcd-lora"]  # fmt: skip
    for preset in needs_both_bases:
        assert {e.base for e in catalog_entries(preset)} == {"sd15", "sdxl"}, preset
        assert len(catalog_entries(preset, "sdxl")) == 1
    for preset in ["lightning-2step", "lightning-4step", "lightning-8step", "turbo", "dmd2", "hyper-sdxl-1step-unet"]:
        assert [e.base for e in catalog_entries(preset)] == ["sdxl"], preset
    assert catalog_entries("house-fast") == () and catalog_entries("distilled") == ()
    used = {e for preset in PRESET_IDS for e in catalog_entries(preset)}
    assert used == set(CATALOG)  # every file a preset uses, none that no preset uses


def test_unified_lora_is_the_one_step_lora():
    for base in ("sd15", "sdxl"):
        (unified,) = catalog_entries("hyper-unified-tcd", base)
        (one_step,) = catalog_entries("hyper-1step", base)
        assert unified is one_step and "1step-lora" in unified.filename


def test_local_names_follow_the_common_notes():
    names = [e.local_filename for e in CATALOG]
    assert len({n.lower() for n in names}) == len(names)
    assert len({e.id for e in CATALOG}) == len(CATALOG)
    assert set(names) >= FIXED_LOCAL_NAMES
    for entry in CATALOG:
        if entry.repo == "ByteDance/Hyper-SD":
            assert entry.local_filename == entry.filename  # official files keep their hub names
    assert get_entry("hyper-sdxl-1step-unet").kind == "unet"
    assert get_entry("sdxl-turbo-fp16").kind == "checkpoint"
    assert {e.kind for e in CATALOG if e.id not in ("hyper-sdxl-1step-unet", "sdxl-turbo-fp16")} == {"lora"}


def test_hyper_sd_official_files_are_all_there():
    hyper = {e.filename for e in CATALOG if e.repo == "ByteDance/Hyper-SD"}
    expected = {
        f"Hyper-{b}-{s}-lora.safetensors" for b in ("SD15", "SDXL") for s in ("1step", "2steps", "4steps", "8steps")
    }
    expected |= {f"Hyper-{b}-{n}steps-CFG-lora.safetensors" for b in ("SD15", "SDXL") for n in (8, 12)}
    expected.add("Hyper-SDXL-1step-Unet.safetensors")
    assert hyper == expected


def test_levels_are_consistent():
    unverified = {e.id for e in CATALOG if e.sha256 is None}
    assert unverified == {"hyper-sdxl-1step-unet", "sdxl-lightning-8step-lora"}
    assert all(e.verified is None for e in CATALOG if e.sha256 is None)
    assert get_entry("hyper-sdxl-4steps-lora").verified == "B+"
    assert get_entry("tcd-sd15-lora").verified == "B" and "conflicting" in get_entry("tcd-sd15-lora").sources
    family = [e for e in CATALOG if e.size is not None and not e.size_exact]
    assert all(e.exact_size is None for e in family)


def test_entries_are_frozen_and_validated():
    entry = get_entry("lcm-lora-sdxl")
    with pytest.raises(FrozenInstanceError):
        entry.size = 1  # type: ignore[misc]
    with pytest.raises(ValueError, match="sha256 must be 64"):
        CatalogEntry("x", "r/x", "f", "f", "lora", "sd15", None, False, "ABC", "A", "", ())
    with pytest.raises(ValueError, match="level"):
        CatalogEntry("x", "r/x", "f", "f", "lora", "sd15", None, False, "a" * 64, None, "", ())
    with pytest.raises(ValueError, match="kind"):
        CatalogEntry("x", "r/x", "f", "f", "vae", "sd15", None, False, None, None, "", ())
    with pytest.raises(KeyError, match="Hyper-SD: no catalog entry 'nope'"):
        get_entry("nope")


def test_urls_match_the_hub_layout():
    entry = get_entry("lcm-lora-sdv1-5")
    assert (
        file_url(entry, "https://huggingface.co/")
        == "https://huggingface.co/latent-consistency/lcm-lora-sdv1-5/resolve/main/pytorch_lora_weights.safetensors"
    )
    assert page_url(entry).endswith("/latent-consistency/lcm-lora-sdv1-5/blob/main/pytorch_lora_weights.safetensors")
    hf_hub = pytest.importorskip("huggingface_hub")
    for e in CATALOG:
        assert file_url(e, "http://127.0.0.1:9") == hf_hub.hf_hub_url(
            e.repo, e.filename, revision=e.revision, endpoint="http://127.0.0.1:9"
        )


def test_lookups():
    entry = get_entry("dmd2-sdxl-4step-lora")
    assert entry_for_sha256(entry.sha256.upper()) is entry
    assert entry_for_local_file("DMD2_SDXL_4STEP_LORA.safetensors") is entry
    assert entry_for_local_file("unknown.safetensors") is None
