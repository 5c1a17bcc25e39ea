"""Whether downloaded bytes may become the catalog file: the catalog's sha256 and the hub's own, weighed."""

from __future__ import annotations

from dataclasses import dataclass

from hypersd.catalog import CatalogEntry


@dataclass(frozen=True)
class Verdict:
    ok: bool
    message: str  # why it was refused, or what was accepted and how
    warnings: tuple[str, ...] = ()


def verify_download(entry: CatalogEntry, actual: str, hub_sha256: str | None = None, allow_unverified=False) -> Verdict:
    """May these bytes become the file?  The hub's own sha256 must match; a level "A" catalog hash must match; a
    "B"/"B+" hash that differs is refused unless the hub's hash matched (the catalog was wrong) or
    ``allow_unverified``; without a catalog hash the file is accepted with a warning that records its hash."""
    name, deleted = entry.local_filename, "The temporary file was deleted"
    if hub_sha256 is not None and hub_sha256 != actual:
        return Verdict(False, f"Hyper-SD: {name} is damaged: its sha256 is {actual}, but the hub says {hub_sha256}. "
                       f"{deleted}; try again.")  # fmt: skip
    if entry.sha256 is None:
        if hub_sha256 is not None:
            return Verdict(True, f"verified against the hub's sha256 {actual} (the catalog has no hash)")
        return Verdict(True, "accepted without verification", (
            f"Hyper-SD: {name} has no known sha256 in our catalog and the server sent none, so it was not "
            f"verified. Its sha256 is {actual}; compare it with the hub's file page.",))  # fmt: skip
    if actual == entry.sha256:
        return Verdict(True, f"verified: sha256 {actual} ({entry.verified} source)")
    if entry.hash_is_confirmed:
        return Verdict(False, f"Hyper-SD: {name} does not match the catalog: expected sha256 {entry.sha256}, got "
                       f"{actual}. {deleted}. If the hub updated this file, the catalog is outdated: report it.")  # fmt: skip
    unconfirmed = (
        f"the catalog's sha256 {entry.sha256} for {name} is unconfirmed (level {entry.verified}: {entry.sources})"
    )
    if hub_sha256 is not None:  # equal to actual here
        return Verdict(
            True,
            f"verified against the hub's sha256 {actual}",
            (f"Hyper-SD: {unconfirmed} and differs from the hub's {actual}; the hub's value was used.",),
        )
    if allow_unverified:
        return Verdict(
            True,
            "accepted although the hash differs (allow_unverified)",
            (f"Hyper-SD: {unconfirmed}; the downloaded file's sha256 is {actual}. Accepted as asked.",),
        )
    return Verdict(False, f"Hyper-SD: {name}'s sha256 is {actual}, but {unconfirmed}. {deleted}. If you trust the "
                   "source, download again with 'accept unverified hashes' (allow_unverified=True).")  # fmt: skip
