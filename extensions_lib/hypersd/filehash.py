"""Hashes of model files: the whole-file sha256 (what the hub's LFS oid is) and WebUI's "addnet" LoRA hash.

Pure standard library, so it runs inside WebUI's venv and in ours alike.

- :func:`sha256_file` is the hash the hub lists for an LFS file (``lfs.sha256``) and the one the catalog carries.
- :func:`addnet_hash_safetensors` is what WebUI v1.10 writes as ``Lora hashes`` in the infotext.  Rule read from
  WebUI's ``modules/hashes.py`` (``addnet_hash_safetensors``, taken from kohya-ss sd-scripts): the first 8 bytes
  are a little-endian unsigned length ``n`` of the JSON header; hash every byte from offset ``n + 8`` to the end.
  ``extensions-builtin/Lora/network.py`` keeps ``hash[0:12]`` as the short hash.
- :class:`HashCache` remembers whole-file hashes by (path, size, mtime) so a status refresh does not re-read
  gigabytes; it can persist to a JSON file.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

CHUNK_BYTES = 1024 * 1024
ADDNET_SHORT_LENGTH = 12

# progress(bytes_done, bytes_total); called at most once per chunk.
HashProgress = Callable[[int, int], None]


def _hash_stream(file, hasher, total: int, progress: HashProgress | None, done: int = 0) -> int:
    while True:
        chunk = file.read(CHUNK_BYTES)
        if not chunk:
            return done
        hasher.update(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, total)


def sha256_file(path: str | os.PathLike, progress: HashProgress | None = None) -> str:
    """Hex sha256 of a whole file, reading 1 MiB at a time; ``progress(done, total)`` after each chunk."""
    total = os.path.getsize(path)
    hasher = hashlib.sha256()
    with open(path, "rb") as file:
        _hash_stream(file, hasher, total, progress)
    return hasher.hexdigest()


def safetensors_header_length(path: str | os.PathLike) -> int:
    """The JSON header's byte length ``n`` stored in a safetensors file's first 8 bytes (little-endian u64)."""
    with open(path, "rb") as file:
        prefix = file.read(8)
    if len(prefix) != 8:
        raise ValueError(f"Hyper-SD: {os.fspath(path)} is shorter than 8 bytes, so it is not a safetensors file.")
    return int.from_bytes(prefix, "little")


def addnet_hash_safetensors(path: str | os.PathLike, progress: HashProgress | None = None) -> str:
    """Full hex sha256 of the bytes after the safetensors JSON header, as WebUI's ``addnet_hash_safetensors``.

    A header length past the end of the file hashes nothing (WebUI seeks past the end and reads b"" too).
    """
    header_length = safetensors_header_length(path)
    total = os.path.getsize(path)
    hasher = hashlib.sha256()
    with open(path, "rb") as file:
        file.seek(header_length + 8)
        _hash_stream(file, hasher, max(0, total - header_length - 8), progress)
    return hasher.hexdigest()


def addnet_short_hash(path: str | os.PathLike) -> str:
    """The 12-hex-digit LoRA hash WebUI shows and writes to the infotext (``Lora hashes: name: <this>``)."""
    return addnet_hash_safetensors(path)[:ADDNET_SHORT_LENGTH]


def file_key(path: str | os.PathLike) -> tuple[str, int, int]:
    """(absolute path, size, mtime in ns): a file whose key is unchanged is assumed to have unchanged bytes."""
    stat = os.stat(path)
    return (os.path.abspath(os.fspath(path)), stat.st_size, stat.st_mtime_ns)


class HashCache:
    """Whole-file sha256 values keyed by :func:`file_key`; thread-safe; optionally persisted as JSON.

    A file whose size or mtime changed is hashed again.  The JSON file is written after each new hash
    (small: one line per model file); a damaged or unreadable JSON file is ignored, never fatal.
    """

    def __init__(self, json_path: str | os.PathLike | None = None):
        self._json_path = Path(json_path) if json_path is not None else None
        self._lock = threading.Lock()
        self._hashes: dict[str, dict] = {}
        if self._json_path is not None:
            self._hashes = self._read_json(self._json_path)

    @staticmethod
    def _read_json(json_path: Path) -> dict[str, dict]:
        try:
            data = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def cached(self, path: str | os.PathLike) -> str | None:
        """The cached hash if the file is unchanged since it was hashed, else None (never reads the file)."""
        try:
            abspath, size, mtime_ns = file_key(path)
        except OSError:
            return None
        with self._lock:
            record = self._hashes.get(abspath)
        if isinstance(record, dict) and record.get("size") == size and record.get("mtime_ns") == mtime_ns:
            value = record.get("sha256")
            return value if isinstance(value, str) else None
        return None

    def remember(self, path: str | os.PathLike, sha256: str) -> None:
        """Record a hash computed elsewhere (e.g. while downloading) for the file as it is now."""
        abspath, size, mtime_ns = file_key(path)
        with self._lock:
            self._hashes[abspath] = {"size": size, "mtime_ns": mtime_ns, "sha256": sha256}
            self._write_json_locked()

    def sha256(self, path: str | os.PathLike, progress: HashProgress | None = None) -> str:
        """The file's sha256, from the cache when the file is unchanged, else computed and remembered."""
        value = self.cached(path)
        if value is not None:
            return value
        key_before = file_key(path)
        value = sha256_file(path, progress)
        if file_key(path) == key_before:  # a file rewritten while we read it must not be cached
            self.remember(path, value)
        return value

    def _write_json_locked(self) -> None:
        if self._json_path is None:
            return
        temporary = self._json_path.with_name(self._json_path.name + ".tmp")
        try:
            self._json_path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(self._hashes, indent=0, sort_keys=True), encoding="utf-8")
            os.replace(temporary, self._json_path)
        except OSError:
            pass  # the cache is an optimisation: a read-only folder must not break a download
