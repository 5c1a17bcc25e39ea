"""What is on disk for a catalog entry: its file under the local name, a copy under another name (found by its
sha256), or a resumable partial download.  Used by the downloads, the Models tab and the planner's LoRA lookup."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from hypersd.catalog import CatalogEntry
from hypersd.filehash import HashCache

PRESENT, MISSING, CORRUPT, STATUS_DOWNLOADING = "present", "missing", "corrupt", "downloading"
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin")
STAGING_SUFFIX = ".hypersd-download"  # <parent>/.<folder>.hypersd-download/<entry id>/: outside WebUI's lists
PARTIAL_SUFFIX = ".incomplete"  # huggingface_hub's partial file


@dataclass(frozen=True)
class FileStatus:
    """What is on disk for an entry: status is present | missing | downloading | corrupt."""

    status: str
    path: str | None = None  # the file found (local name, or a renamed copy recognised by hash)
    sha256: str | None = None  # when computed (or cached)
    partial_bytes: int = 0  # bytes of a resumable partial download
    message: str = ""


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


class ModelFolders:
    """Where each kind of file goes (``target_dirs(kind)``) and where copies may already be (``search_dirs``)."""

    def __init__(
        self,
        target_dirs: Callable[[str], str | os.PathLike],
        search_dirs: Callable[[str], Iterable[str | os.PathLike]] | None = None,
        hash_cache: HashCache | None = None,
    ):
        self._target_dirs, self._search_dirs = target_dirs, search_dirs
        self.hash_cache = hash_cache if hash_cache is not None else HashCache()

    def target_dir(self, entry: CatalogEntry) -> Path:
        return Path(self._target_dirs(entry.kind))

    def target_path(self, entry: CatalogEntry) -> Path:
        return self.target_dir(entry) / entry.local_filename

    def staging_dir(self, entry: CatalogEntry) -> Path:
        """Where a download lands before it is verified: beside the target folder (same disk, so the final move is
        a rename), never inside it, so WebUI cannot list an unverified or hub-named file."""
        target = self.target_dir(entry)
        return target.parent / f".{target.name}{STAGING_SUFFIX}" / entry.id

    def partial_bytes(self, entry: CatalogEntry) -> int:
        """The size of the newest partial file: the one growing now, or the one a new start resumes (huggingface_hub
        2.x names each attempt's file uniquely and resumes none: older ones are removed after a success)."""
        staging = self.staging_dir(entry)
        partials = (
            [(p.stat().st_mtime, _size(p) or 0) for p in staging.rglob("*" + PARTIAL_SUFFIX)]
            if staging.is_dir()
            else []
        )
        return max(partials)[1] if partials else 0

    def _folders(self, entry: CatalogEntry, extra: Iterable[str | os.PathLike] | None) -> list[Path]:
        more = list(self._search_dirs(entry.kind)) if self._search_dirs is not None else []
        return list(dict.fromkeys(Path(d) for d in [self.target_dir(entry), *more, *(extra or [])]))

    def _candidates(self, entry: CatalogEntry, folders: list[Path]) -> list[Path]:
        """Its local name (and, with a hash, its hub name) in each folder, any size, target folder first; then, with
        a size and a hash, every model file of that size found recursively (as WebUI lists them)."""
        names = [entry.local_filename]
        if entry.sha256 is not None:  # the hub's own name (e.g. pytorch_lora_weights.safetensors): hashed, so safe
            names.append(entry.filename.rsplit("/", 1)[-1])
        found = [folder / name for folder in folders for name in names if (folder / name).is_file()]
        if entry.size is None or entry.sha256 is None:
            return list(dict.fromkeys(found))
        for folder in (f for f in folders if f.is_dir()):
            for root, _dirs, files in os.walk(folder, followlinks=True):
                for name in sorted(files):
                    lower, path = name.lower(), Path(root) / name
                    named_alike = lower == entry.local_filename.lower()
                    if lower.endswith(MODEL_SUFFIXES) and not named_alike and _size(path) == entry.size:
                        found.append(path)
        return list(dict.fromkeys(found))

    def find_present(self, entry: CatalogEntry, search_dirs=None, progress=None) -> Path | None:
        """A file with the entry's bytes, under its local name or any other; None if there is none.  Without a
        catalog hash only the local name counts (its size must equal an exact known size).  Hashes are cached."""
        candidates = self._candidates(entry, self._folders(entry, search_dirs))
        if entry.sha256 is None:
            named = [p for p in candidates if p.name.lower() == entry.local_filename.lower()]
            return next((p for p in named if entry.exact_size is None or _size(p) == entry.exact_size), None)
        for path in candidates:
            try:
                if self.hash_cache.sha256(path, progress) == entry.sha256:
                    return path
            except OSError:
                continue
        return None

    def _find_cached(self, entry: CatalogEntry) -> Path | None:
        candidates = self._candidates(entry, self._folders(entry, None))
        return next((p for p in candidates if self.hash_cache.cached(p) == entry.sha256), None)

    def inspect(self, entry: CatalogEntry, *, deep: bool = True) -> FileStatus:
        """The entry's file status.  ``deep=False`` never reads file contents (cached hashes only)."""
        partial, local = self.partial_bytes(entry), self.target_path(entry)
        if local.is_file():
            return self._inspect_local(entry, local, partial, deep)
        found = self.find_present(entry) if deep or entry.sha256 is None else self._find_cached(entry)
        if found is not None:
            return FileStatus(PRESENT, str(found), self.hash_cache.cached(found), partial, f"present as {found.name}")
        message = f"partial download of {partial} bytes can be resumed" if partial else "not downloaded"
        return FileStatus(MISSING, None, None, partial, message)

    def _inspect_local(self, entry: CatalogEntry, local: Path, partial: int, deep: bool) -> FileStatus:
        size = local.stat().st_size
        if entry.exact_size is not None and size != entry.exact_size:
            why = f"size {size} bytes, expected {entry.exact_size}: incomplete or a different file; download again"
            return FileStatus(CORRUPT, str(local), None, partial, why)
        if entry.sha256 is None:
            return FileStatus(PRESENT, str(local), self.hash_cache.cached(local), partial, "no catalog hash")
        actual = self.hash_cache.sha256(local) if deep else self.hash_cache.cached(local)
        if actual is None:
            return FileStatus(PRESENT, str(local), None, partial, "present, not yet hashed")
        if actual == entry.sha256:
            return FileStatus(PRESENT, str(local), actual, partial, "verified")
        if entry.hash_is_confirmed:
            why = f"sha256 {actual}, expected {entry.sha256}: damaged or a different file; download again"
            return FileStatus(CORRUPT, str(local), actual, partial, why)
        why = f"sha256 {actual} differs from the catalog's unconfirmed {entry.sha256} (level {entry.verified})"
        return FileStatus(PRESENT, str(local), actual, partial, why)
