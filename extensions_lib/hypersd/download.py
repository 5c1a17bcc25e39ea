"""Download manager for the catalog's files: resumable, verified, never a hang, never a half file in sight.

Flow of one download (:meth:`DownloadManager.start`, on a worker thread):

1. Look for the file first: under its local name, then under any name whose size matches and whose sha256 is
   the catalog's (:meth:`DownloadManager.find_present`).  Found → done, no request.
2. ``GET {endpoint}/{repo}/resolve/{revision}/{file}`` into ``<target>/<local name>.hypersd-part``.  A partial
   file left by an earlier attempt is resumed with ``Range: bytes=<size>-`` (206 → append; 200 → the server
   ignored the range, start over).  Bytes are hashed while they stream.
3. fsync, verify the sha256 (:func:`verify_download`), then ``os.replace`` to the final name, so WebUI never
   lists a file that is incomplete or wrong.  A mismatch deletes the temporary file and says expected vs actual.

Why urllib and not huggingface_hub's own downloader: we need our temporary name, resume from it, progress,
timeouts and atomic verification, and the same code must run with huggingface_hub 0.2x (requests, WebUI's
venv) and 1.x/2.x (httpx).  The standard library behaves the same everywhere and honours ``http_proxy`` /
``https_proxy`` / ``no_proxy`` from the environment (``urllib.request.getproxies``).  huggingface_hub is still
used, when importable, for what it owns: the endpoint (``HF_ENDPOINT``), the stored token and its headers.

Authorization is sent to the endpoint's host only: a redirect to another host (the hub's LFS CDN) drops it,
as huggingface_hub does.  The hub's ``X-Linked-Etag`` on the redirect is the file's LFS sha256; it is kept and
used as a second, authoritative check (see :func:`verify_download`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import re
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from hypersd.catalog import CATALOG, DEFAULT_ENDPOINT, CatalogEntry, file_url, page_url
from hypersd.filehash import HashCache

PART_SUFFIX = ".hypersd-part"
CHUNK_BYTES = 1024 * 1024
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin")
OFFLINE_VALUES = {"1", "ON", "YES", "TRUE"}
DISK_MARGIN_BYTES = 64 * 1024 * 1024  # keep a little room so WebUI itself can still write

# Job states
QUEUED = "queued"
DOWNLOADING = "downloading"
VERIFYING = "verifying"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
ACTIVE_STATES = frozenset({QUEUED, DOWNLOADING, VERIFYING})

# File states (status())
PRESENT, MISSING, CORRUPT = "present", "missing", "corrupt"
STATUS_DOWNLOADING = "downloading"

# Error kinds
ERR_NETWORK, ERR_TIMEOUT, ERR_HTTP, ERR_HASH, ERR_WRITE, ERR_OFFLINE, ERR_CANCELLED, ERR_INTERNAL = (
    "network", "timeout", "http", "hash_mismatch", "write", "offline", "cancelled", "internal",
)  # fmt: skip

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class DownloadError(Exception):
    """A download that cannot complete; ``kind`` is one of the ERR_* values, ``str()`` is the user's message."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


class _Cancelled(Exception):
    pass


# ---------------------------------------------------------------------------------------------------------------
# Settings from the environment and huggingface_hub


def resolve_endpoint(endpoint: str | None = None) -> str:
    """Explicit endpoint, else ``HF_ENDPOINT`` (read now, not at import), else huggingface_hub's, else the hub."""
    if endpoint:
        return endpoint.rstrip("/")
    from_env = os.environ.get("HF_ENDPOINT", "").strip()
    if from_env:
        return from_env.rstrip("/")
    try:
        from huggingface_hub import constants

        return str(constants.ENDPOINT).rstrip("/")
    except Exception:  # huggingface_hub missing or broken: the public hub
        return DEFAULT_ENDPOINT


def _stored_token() -> str | None:
    """The token ``huggingface-cli login`` stored, via huggingface_hub (any version); None without it."""
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:
        pass
    try:
        from huggingface_hub import HfFolder  # older releases

        return HfFolder.get_token()
    except Exception:
        return None


def resolve_token(token: str | bool | None = None) -> str | None:
    """Explicit token; ``False`` → none; else ``HF_TOKEN`` / ``HUGGING_FACE_HUB_TOKEN``; else the stored token."""
    if token is False:
        return None
    if isinstance(token, str) and token.strip():
        return token.strip()
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    stored = _stored_token()
    return stored.strip() if isinstance(stored, str) and stored.strip() else None


def request_headers(token: str | None) -> dict[str, str]:
    """User agent and Authorization as huggingface_hub builds them (a plain fallback without it)."""
    try:
        from huggingface_hub.utils import build_hf_headers

        from hypersd import __version__

        headers = build_hf_headers(token=token or False, library_name="sd-webui-hyper-sd", library_version=__version__)
        headers = {str(k): str(v) for k, v in headers.items()}
    except Exception:
        headers = {"user-agent": "sd-webui-hyper-sd"}
        if token:
            headers["authorization"] = f"Bearer {token}"
    return headers


def hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in OFFLINE_VALUES


# ---------------------------------------------------------------------------------------------------------------
# Verification (pure)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    message: str  # why it was refused, or what was accepted and how
    warnings: tuple[str, ...] = ()


def verify_download(
    entry: CatalogEntry, actual_sha256: str, hub_sha256: str | None = None, allow_unverified: bool = False
) -> Verdict:
    """Decide whether downloaded bytes may become the file.

    - The hub's own sha256 (``X-Linked-Etag``), when it sent one, must match: otherwise the transfer is broken.
    - A level "A" catalog hash must match, whatever the hub says (a changed upstream file is not what the
      preset was made for).
    - A level "B"/"B+" hash that differs is refused, unless the hub's hash matched the bytes (then the catalog
      value was wrong: accept with a warning) or ``allow_unverified`` is set (accept with a warning).
    - No catalog hash: accept with a warning that records the computed hash.
    """
    name = entry.local_filename
    if hub_sha256 is not None and hub_sha256 != actual_sha256:
        return Verdict(
            False,
            f"Hyper-SD: {name} is damaged: its sha256 is {actual_sha256}, but the hub says {hub_sha256}. "
            "The temporary file was deleted; try again.",
        )
    if entry.sha256 is None:
        if hub_sha256 is not None:
            return Verdict(True, f"verified against the hub's sha256 {actual_sha256} (the catalog has no hash)")
        return Verdict(
            True,
            "accepted without verification",
            (
                f"Hyper-SD: {name} has no known sha256 in our catalog and the server sent none, so it was not "
                f"verified. Its sha256 is {actual_sha256}; compare it with the hub's file page.",
            ),
        )
    if actual_sha256 == entry.sha256:
        return Verdict(True, f"verified: sha256 {actual_sha256} ({entry.verified} source)")
    if entry.hash_is_confirmed:
        return Verdict(
            False,
            f"Hyper-SD: {name} does not match the catalog: expected sha256 {entry.sha256}, got {actual_sha256}. "
            "The temporary file was deleted. If the hub updated this file, the catalog is outdated: report it.",
        )
    unconfirmed = (
        f"the catalog's sha256 {entry.sha256} for {name} is unconfirmed (level {entry.verified}: {entry.sources})"
    )
    if hub_sha256 is not None:  # equal to actual here
        return Verdict(
            True,
            f"verified against the hub's sha256 {actual_sha256}",
            (f"Hyper-SD: {unconfirmed} and differs from the hub's {actual_sha256}; the hub's value was used.",),
        )
    if allow_unverified:
        return Verdict(
            True,
            "accepted although the hash differs (allow_unverified)",
            (f"Hyper-SD: {unconfirmed}; the downloaded file's sha256 is {actual_sha256}. Accepted as asked.",),
        )
    return Verdict(
        False,
        f"Hyper-SD: {name}'s sha256 is {actual_sha256}, but {unconfirmed}. The temporary file was deleted. "
        "If you trust the source, download again with 'accept unverified hashes' (allow_unverified=True).",
    )


# ---------------------------------------------------------------------------------------------------------------
# Jobs


@dataclass(frozen=True)
class JobSnapshot:
    """One consistent view of a job, safe to hand to a UI thread."""

    entry_id: str
    state: str  # queued | downloading | verifying | done | failed | cancelled
    bytes_done: int
    bytes_total: int | None
    speed_bps: float
    message: str
    url: str
    target_path: str  # where the file will be (or is, when done and fetched)
    path: str | None = None  # the usable file once done (may be a renamed copy found by hash)
    sha256: str | None = None
    error_kind: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def fraction(self) -> float | None:
        return self.bytes_done / self.bytes_total if self.bytes_total else None


class DownloadJob:
    """A download of one catalog entry; read it with :meth:`snapshot`, wait with :meth:`wait`."""

    def __init__(self, entry: CatalogEntry, url: str, target_path: Path, allow_unverified: bool):
        self.entry = entry
        self.allow_unverified = allow_unverified
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._cancel = threading.Event()
        self._snapshot = JobSnapshot(entry.id, QUEUED, 0, entry.size, 0.0, "queued", url, str(target_path))

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            return self._snapshot

    def _update(self, **changes) -> JobSnapshot:
        with self._lock:
            self._snapshot = replace(self._snapshot, **changes)
            return self._snapshot

    @property
    def state(self) -> str:
        return self.snapshot().state

    @property
    def active(self) -> bool:
        return self.snapshot().active

    def cancel(self) -> None:
        """Ask the job to stop; the partial file is kept so a later start resumes it."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished (done, failed or cancelled); False on timeout."""
        return self._finished.wait(timeout)


@dataclass(frozen=True)
class FileStatus:
    """What is on disk for an entry: status is present | missing | downloading | corrupt."""

    status: str
    path: str | None = None  # the file found (local name, or a renamed copy recognised by hash)
    sha256: str | None = None  # when computed (or cached)
    partial_bytes: int = 0  # size of a resumable .hypersd-part
    message: str = ""


# ---------------------------------------------------------------------------------------------------------------
# HTTP


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects, keeps Authorization on the original host only, and remembers the hub's file hash."""

    def __init__(self):
        super().__init__()
        self.linked_etag: str | None = None
        self.linked_size: int | None = None

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self._remember_linked(headers)
        new_request = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new_request is not None:
            old_host = urllib.parse.urlsplit(req.full_url)[:2]
            new_host = urllib.parse.urlsplit(new_request.full_url)[:2]
            if old_host != new_host:
                new_request.remove_header("Authorization")
        return new_request

    def _remember_linked(self, headers) -> None:
        etag = parse_sha256_etag(headers.get("X-Linked-Etag"))
        if etag is not None:
            self.linked_etag = etag
        size = headers.get("X-Linked-Size")
        if size is not None and size.strip().isdigit():
            self.linked_size = int(size)


def parse_sha256_etag(value: str | None) -> str | None:
    """The sha256 in an ETag like ``"<64 hex>"`` or ``W/"<64 hex>"``; None for other ETags (git sha1, md5)."""
    if not value:
        return None
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"').lower()
    return value if _SHA256_RE.match(value) else None


_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _set_read_timeout(response, seconds: float) -> None:
    """Give the open socket its read timeout (urlopen's timeout covered connect and headers)."""
    raw = getattr(getattr(response, "fp", None), "raw", None)
    sock = getattr(raw, "_sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.settimeout(seconds)


def _write(file, data: bytes) -> None:
    """One chunk to the temporary file (a seam so tests can simulate a full disk)."""
    file.write(data)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def progress_line(snapshot: JobSnapshot, name: str) -> str:
    """A tqdm-like console line: name, percent, done/total, speed, ETA."""
    done = _human_bytes(snapshot.bytes_done)
    if snapshot.bytes_total:
        percent = 100.0 * snapshot.bytes_done / snapshot.bytes_total
        head = f"{percent:5.1f}% {done}/{_human_bytes(snapshot.bytes_total)}"
        remaining = max(0, snapshot.bytes_total - snapshot.bytes_done)
        eta = f", ETA {remaining / snapshot.speed_bps:.0f} s" if snapshot.speed_bps > 0 else ""
    else:
        head, eta = done, ""
    return f"Hyper-SD: {name} {head}, {_human_bytes(snapshot.speed_bps)}/s{eta}"


# ---------------------------------------------------------------------------------------------------------------
# Manager


@dataclass
class _Transfer:
    """Mutable state of one transfer attempt."""

    hasher: object = field(default_factory=hashlib.sha256)
    hub_sha256: str | None = None
    total: int | None = None


class DownloadManager:
    """Downloads, verifies and reports catalog files.  Thread-safe; one job per entry at a time.

    ``target_dirs(kind)`` gives the folder for "lora" / "unet" / "checkpoint" (the WebUI adapter passes
    ``cmd_opts.lora_dir`` etc.).  ``search_dirs(kind)`` lists folders where a copy may already be (default: the
    target folder).  ``on_progress(snapshot)`` is called on every state change and at most every
    ``progress_interval`` s while bytes flow; ``console(line)`` gets a tqdm-like line at most every
    ``console_interval`` s and one per state change (``None`` silences it).  Callback errors are printed, never
    raised into the download.
    """

    def __init__(
        self,
        target_dirs: Callable[[str], str | os.PathLike],
        *,
        endpoint: str | None = None,
        token: str | bool | None = None,
        connect_timeout: float = 15.0,
        read_timeout: float = 60.0,
        retries: int = 2,
        catalog: Iterable[CatalogEntry] = CATALOG,
        search_dirs: Callable[[str], Iterable[str | os.PathLike]] | None = None,
        on_progress: Callable[[JobSnapshot], None] | None = None,
        console: Callable[[str], None] | None = print,
        hash_cache: HashCache | None = None,
        allow_unverified: bool = False,
        max_parallel: int = 2,
        progress_interval: float = 0.25,
        console_interval: float = 2.0,
    ):
        self._target_dirs = target_dirs
        self._search_dirs = search_dirs
        self._endpoint = endpoint
        self._token = token
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retries = max(0, retries)
        self._entries = {entry.id: entry for entry in catalog}
        self._on_progress = on_progress
        self._console = console
        self.hash_cache = hash_cache if hash_cache is not None else HashCache()
        self.allow_unverified = allow_unverified
        self._slots = threading.BoundedSemaphore(max(1, max_parallel))
        self.progress_interval = progress_interval
        self.console_interval = console_interval
        self._lock = threading.Lock()
        self._jobs: dict[str, DownloadJob] = {}

    # --- lookups ----------------------------------------------------------------------------------------------

    def entries(self) -> tuple[CatalogEntry, ...]:
        return tuple(self._entries.values())

    def entry(self, entry: str | CatalogEntry) -> CatalogEntry:
        if isinstance(entry, CatalogEntry):
            return entry
        try:
            return self._entries[entry]
        except KeyError:
            raise KeyError(
                f"Hyper-SD: no catalog entry {entry!r}; known: {', '.join(sorted(self._entries))}."
            ) from None

    @property
    def endpoint(self) -> str:
        return resolve_endpoint(self._endpoint)

    def url_for(self, entry: str | CatalogEntry) -> str:
        return file_url(self.entry(entry), self.endpoint)

    def target_dir(self, entry: str | CatalogEntry) -> Path:
        return Path(self._target_dirs(self.entry(entry).kind))

    def target_path(self, entry: str | CatalogEntry) -> Path:
        entry = self.entry(entry)
        return self.target_dir(entry) / entry.local_filename

    def part_path(self, entry: str | CatalogEntry) -> Path:
        target = self.target_path(entry)
        return target.with_name(target.name + PART_SUFFIX)

    def manual_step(self, entry: str | CatalogEntry) -> str:
        """The exact manual fix: which URL to fetch and where to save it."""
        entry = self.entry(entry)
        return (
            f"Download it by hand from {self.url_for(entry)} (page: {page_url(entry, self.endpoint)}) "
            f"and save it as {self.target_path(entry)}"
        )

    # --- jobs ---------------------------------------------------------------------------------------------------

    def start(self, entry: str | CatalogEntry, *, allow_unverified: bool | None = None) -> DownloadJob:
        """Start (or join) the download of an entry; a second start while one runs returns the running job."""
        entry = self.entry(entry)
        with self._lock:
            running = self._jobs.get(entry.id)
            if running is not None and running.active:
                return running
            allow = self.allow_unverified if allow_unverified is None else allow_unverified
            job = DownloadJob(entry, self.url_for(entry), self.target_path(entry), allow)
            self._jobs[entry.id] = job
        worker = threading.Thread(target=self._run, args=(job,), name=f"hypersd-download-{entry.id}", daemon=True)
        worker.start()
        return job

    def job(self, entry: str | CatalogEntry) -> DownloadJob | None:
        """The latest job for an entry (running or finished), or None."""
        with self._lock:
            return self._jobs.get(self.entry(entry).id)

    def jobs(self) -> dict[str, JobSnapshot]:
        with self._lock:
            jobs = dict(self._jobs)
        return {entry_id: job.snapshot() for entry_id, job in jobs.items()}

    def cancel(self, entry: str | CatalogEntry) -> bool:
        """Cancel a running job; True if there was one."""
        job = self.job(entry)
        if job is None or not job.active:
            return False
        job.cancel()
        return True

    def discard_partial(self, entry: str | CatalogEntry) -> bool:
        """Delete a resumable partial file (not while its job runs)."""
        job = self.job(entry)
        if job is not None and job.active:
            return False
        try:
            self.part_path(entry).unlink()
            return True
        except FileNotFoundError:
            return False

    # --- what is on disk -------------------------------------------------------------------------------------

    def _search_folders(self, entry: CatalogEntry, extra: Iterable[str | os.PathLike] | None) -> list[Path]:
        folders = [self.target_dir(entry)]
        if self._search_dirs is not None:
            folders += [Path(d) for d in self._search_dirs(entry.kind)]
        if extra is not None:
            folders += [Path(d) for d in extra]
        unique: list[Path] = []
        for folder in folders:
            if folder not in unique:
                unique.append(folder)
        return unique

    def find_present(
        self,
        entry: str | CatalogEntry,
        search_dirs: Iterable[str | os.PathLike] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Path | None:
        """A file with the entry's bytes, under its local name or any other; None if there is none.

        With a catalog hash, a file whose sha256 equals it is a match; hashed are the files named like the local
        or the hub file (any size, local name first) and, when the entry has a size (exact or family), every model
        file of that size (folders searched recursively, like WebUI's).  Without a hash, only the local name is
        recognised (its size must equal an exact known size).  Hashes are cached by (path, size, mtime).
        """
        entry = self.entry(entry)
        candidates = self._candidates(entry, self._search_folders(entry, search_dirs))
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

    def _candidates(self, entry: CatalogEntry, folders: list[Path]) -> list[Path]:
        """Files that may hold the entry: its local name (and, with a hash, its hub name) in each folder, any size,
        target folder first; then, when the entry has a size and a hash, every model file of that size found
        recursively."""
        found: list[Path] = []
        wanted_name = entry.local_filename.lower()
        names = [entry.local_filename]
        if entry.sha256 is not None:  # the hub's own name (e.g. pytorch_lora_weights.safetensors): hashed, so safe
            names.append(entry.filename.rsplit("/", 1)[-1])
        for folder in [self.target_dir(entry), *folders]:
            for name in names:
                path = folder / name
                if path not in found and path.is_file():
                    found.append(path)
        if entry.size is None or entry.sha256 is None:
            return found
        for folder in folders:
            if not folder.is_dir():
                continue
            for root, _dirs, files in os.walk(folder, followlinks=True):
                for name in sorted(files):
                    lower = name.lower()
                    if not lower.endswith(MODEL_SUFFIXES) or lower == wanted_name:
                        continue
                    path = Path(root) / name
                    if path not in found and _size(path) == entry.size:
                        found.append(path)
        return found

    def inspect(self, entry: str | CatalogEntry, *, deep: bool = True) -> FileStatus:
        """The entry's file status with details.  ``deep=False`` never reads file contents (uses cached hashes)."""
        entry = self.entry(entry)
        part = self.part_path(entry)
        partial = part.stat().st_size if part.is_file() else 0
        job = self.job(entry)
        if job is not None and job.active:
            return FileStatus(STATUS_DOWNLOADING, None, None, partial, job.snapshot().message)
        local = self.target_path(entry)
        if local.is_file():
            size = local.stat().st_size
            if entry.exact_size is not None and size != entry.exact_size:
                return FileStatus(
                    CORRUPT, str(local), None, partial,
                    f"size {size} bytes, expected {entry.exact_size}: incomplete or a different file; download again",
                )  # fmt: skip
            if entry.sha256 is None:
                return FileStatus(PRESENT, str(local), self.hash_cache.cached(local), partial, "no catalog hash")
            actual = self.hash_cache.sha256(local) if deep else self.hash_cache.cached(local)
            if actual is None:
                return FileStatus(PRESENT, str(local), None, partial, "present, not yet hashed")
            if actual == entry.sha256:
                return FileStatus(PRESENT, str(local), actual, partial, "verified")
            if entry.hash_is_confirmed:
                return FileStatus(
                    CORRUPT, str(local), actual, partial,
                    f"sha256 {actual}, expected {entry.sha256}: damaged or a different file; download again",
                )  # fmt: skip
            return FileStatus(
                PRESENT, str(local), actual, partial,
                f"sha256 {actual} differs from the catalog's unconfirmed {entry.sha256} (level {entry.verified})",
            )  # fmt: skip
        search_contents = deep or entry.sha256 is None
        found = self.find_present(entry) if search_contents else self._find_present_cached(entry)
        if found is not None:
            return FileStatus(PRESENT, str(found), self.hash_cache.cached(found), partial, f"present as {found.name}")
        message = f"partial download of {partial} bytes can be resumed" if partial else "not downloaded"
        return FileStatus(MISSING, None, None, partial, message)

    def _find_present_cached(self, entry: CatalogEntry) -> Path | None:
        for path in self._candidates(entry, self._search_folders(entry, None)):
            if self.hash_cache.cached(path) == entry.sha256:
                return path
        return None

    def status(self, entry: str | CatalogEntry, *, deep: bool = True) -> str:
        """One of "present", "missing", "downloading", "corrupt" (details: :meth:`inspect`)."""
        return self.inspect(entry, deep=deep).status

    # --- the worker -------------------------------------------------------------------------------------------

    def _emit(self, job: DownloadJob, snapshot: JobSnapshot, force: bool, clock: dict) -> None:
        now = time.monotonic()
        if self._on_progress is not None and (force or now - clock.get("ui", -1e9) >= self.progress_interval):
            clock["ui"] = now
            try:
                self._on_progress(snapshot)
            except Exception as error:  # a broken UI callback must not kill the download
                print(f"Hyper-SD: progress callback failed: {error!r}")
        if self._console is not None and (force or now - clock.get("console", -1e9) >= self.console_interval):
            clock["console"] = now
            if snapshot.state == DOWNLOADING:
                line = progress_line(snapshot, job.entry.local_filename)
            else:
                line = f"Hyper-SD: {job.entry.local_filename}: {snapshot.state}: {snapshot.message}"
            with contextlib.suppress(Exception):
                self._console(line)

    def _set(self, job: DownloadJob, clock: dict, force: bool = True, **changes) -> JobSnapshot:
        snapshot = job._update(**changes)
        self._emit(job, snapshot, force, clock)
        return snapshot

    def _run(self, job: DownloadJob) -> None:
        clock: dict = {}
        entry = job.entry
        try:
            self._set(job, clock, message="waiting for a free download slot")
            while not self._slots.acquire(timeout=0.1):
                if job.cancel_requested:
                    raise _Cancelled
            try:
                self._download(job, clock)
            finally:
                self._slots.release()
        except _Cancelled:
            self._set(
                job, clock, state=CANCELLED, error_kind=ERR_CANCELLED,
                message=f"Hyper-SD: download of {entry.local_filename} cancelled; the partial file is kept for resuming.",
            )  # fmt: skip
        except DownloadError as error:
            self._set(job, clock, state=FAILED, error_kind=error.kind, message=error.message)
        except Exception as error:  # never leave a job "downloading" forever
            self._set(
                job, clock, state=FAILED, error_kind=ERR_INTERNAL,
                message=f"Hyper-SD: unexpected error downloading {entry.local_filename}: {error!r}. "
                f"{self.manual_step(entry)}.",
            )  # fmt: skip
        finally:
            job._finished.set()

    def _download(self, job: DownloadJob, clock: dict) -> None:
        entry = job.entry
        target = self.target_path(entry)
        if entry.sha256 is not None:
            self._set(job, clock, state=VERIFYING, message="looking for an existing copy")

        def hashing(done: int, total: int) -> None:  # big files take seconds to hash: show it
            self._set(job, clock, force=False, bytes_done=done, bytes_total=total)

        present = self.find_present(entry, progress=hashing)
        if present is not None:
            self._set(
                job, clock, state=DONE, path=str(present), sha256=self.hash_cache.cached(present),
                bytes_done=present.stat().st_size, bytes_total=present.stat().st_size,
                message=f"already present: {present}",
            )  # fmt: skip
            return
        if hf_offline():
            raise DownloadError(
                ERR_OFFLINE,
                f"Hyper-SD: HF_HUB_OFFLINE is set, so {entry.local_filename} was not downloaded. "
                f"Unset HF_HUB_OFFLINE, or {self.manual_step(entry)}.",
            )
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise self._write_error(entry, error) from None

        transfer = _Transfer()
        attempt = 0
        while True:
            if job.cancel_requested:
                raise _Cancelled
            try:
                self._fetch(job, clock, transfer)
                break
            except DownloadError as error:
                if error.kind not in (ERR_NETWORK, ERR_TIMEOUT) or attempt >= self.retries:
                    raise
                attempt += 1
                self._set(job, clock, message=f"{error.message} Retrying ({attempt}/{self.retries})…")
                time.sleep(min(2.0, 0.2 * attempt))
        self._finish(job, clock, transfer)

    def _finish(self, job: DownloadJob, clock: dict, transfer: _Transfer) -> None:
        entry = job.entry
        part = self.part_path(entry)
        target = self.target_path(entry)
        actual = transfer.hasher.hexdigest()
        self._set(job, clock, state=VERIFYING, message="verifying sha256")
        verdict = verify_download(entry, actual, transfer.hub_sha256, job.allow_unverified)
        if not verdict.ok:
            part.unlink(missing_ok=True)
            raise DownloadError(ERR_HASH, verdict.message)
        try:
            os.replace(part, target)
            _fsync_dir(target.parent)
        except OSError as error:
            raise self._write_error(entry, error) from None
        with contextlib.suppress(OSError):
            self.hash_cache.remember(target, actual)
        for warning in verdict.warnings:
            if self._console is not None:
                self._console(warning)
        self._set(
            job, clock, state=DONE, path=str(target), sha256=actual, warnings=verdict.warnings,
            message=f"downloaded {entry.local_filename}: {verdict.message}",
        )  # fmt: skip

    def _write_error(self, entry: CatalogEntry, error: OSError) -> DownloadError:
        folder = self.target_dir(entry)
        if error.errno == errno.ENOSPC:
            reason = "the disk is full"
        elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            reason = "no permission to write there"
        else:
            reason = error.strerror or repr(error)
        return DownloadError(
            ERR_WRITE,
            f"Hyper-SD: cannot write {entry.local_filename} to {folder}: {reason} ({error}). "
            f"Free space or fix the folder's permissions, then download again (a partial file is resumed); "
            f"or {self.manual_step(entry)}.",
        )

    def _network_error(self, entry: CatalogEntry, reason: str, kind: str = ERR_NETWORK) -> DownloadError:
        return DownloadError(
            kind,
            f"Hyper-SD: could not download {entry.local_filename} from {self.url_for(entry)}: {reason}. "
            f"Check the network (proxy: HTTPS_PROXY; mirror: HF_ENDPOINT) and try again; or {self.manual_step(entry)}.",
        )

    def _http_error(self, entry: CatalogEntry, code: int, reason: str) -> DownloadError:
        url = self.url_for(entry)
        if code == 404:
            hint = f"the hub has no such file (renamed or removed?); check {self.endpoint}/{entry.repo}"
        elif code in (401, 403):
            hint = (
                "the hub refused access: accept the model's licence on its page and set HF_TOKEN "
                "(or run `huggingface-cli login`)"
            )
        elif code == 429:
            hint = "too many requests: wait a few minutes"
        else:
            hint = "the server failed"
        return DownloadError(
            ERR_HTTP,
            f"Hyper-SD: could not download {entry.local_filename}: HTTP {code} {reason} from {url}: {hint}. "
            f"{self.manual_step(entry)}.",
        )

    def _open(self, entry: CatalogEntry, offset: int, handler: _RedirectHandler):
        headers = request_headers(resolve_token(self._token))
        if offset:
            headers["Range"] = f"bytes={offset}-"
        request = urllib.request.Request(self.url_for(entry), headers=headers, method="GET")
        opener = urllib.request.build_opener(handler)  # includes ProxyHandler: env proxies and no_proxy
        try:
            return opener.open(request, timeout=self.connect_timeout)
        except urllib.error.HTTPError as error:
            error.close()
            raise
        except TimeoutError:  # socket.timeout is TimeoutError since Python 3.10
            raise self._network_error(
                entry, f"no answer within {self.connect_timeout:g} s (timeout)", ERR_TIMEOUT
            ) from None
        except urllib.error.URLError as error:
            if isinstance(error.reason, TimeoutError):
                raise self._network_error(
                    entry, f"no answer within {self.connect_timeout:g} s (timeout)", ERR_TIMEOUT
                ) from None
            raise self._network_error(entry, str(error.reason)) from None
        except (OSError, http.client.HTTPException) as error:
            raise self._network_error(entry, repr(error)) from None

    def _fetch(self, job: DownloadJob, clock: dict, transfer: _Transfer) -> None:
        """One attempt: (re)open the partial file, request the rest, stream and hash it into the partial file."""
        entry = job.entry
        part = self.part_path(entry)
        offset = part.stat().st_size if part.is_file() else 0
        handler = _RedirectHandler()
        try:
            response = self._open(entry, offset, handler)
        except urllib.error.HTTPError as error:
            if error.code == 416 and offset:  # the partial file is as long as the file or longer: start over
                part.unlink(missing_ok=True)
                raise self._network_error(entry, "the partial file did not fit the server's file; restarting") from None
            raise self._http_error(entry, error.code, str(error.reason)) from None
        with response:
            transfer.hub_sha256 = handler.linked_etag or parse_sha256_etag(response.headers.get("X-Linked-Etag"))
            status = response.status
            content_length = response.headers.get("Content-Length")
            length = int(content_length) if content_length and content_length.isdigit() else None
            append = False
            if offset and status == 206:
                match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", ""))
                append = match is not None and int(match.group(1)) == offset
                if match is not None and match.group(3) != "*":
                    transfer.total = int(match.group(3))
            if offset and status == 206 and not append:  # a range we did not ask for: never mix it in
                part.unlink(missing_ok=True)
                raise self._network_error(entry, "the server answered an unexpected byte range; restarting")
            if not append:
                offset = 0
                if length is not None:
                    transfer.total = length
            if transfer.total is None and length is not None:
                transfer.total = offset + length
            if transfer.total is None:
                transfer.total = handler.linked_size or entry.size
            if entry.hash_is_confirmed and transfer.hub_sha256 and transfer.hub_sha256 != entry.sha256:
                raise DownloadError(
                    ERR_HASH,
                    f"Hyper-SD: the hub now serves another {entry.local_filename} (its sha256 is "
                    f"{transfer.hub_sha256}, the catalog expects {entry.sha256}); nothing was downloaded. "
                    "The catalog is outdated: report it.",
                )
            transfer.hasher = hashlib.sha256()
            try:
                if append:
                    with open(part, "rb") as existing:
                        for chunk in iter(lambda: existing.read(CHUNK_BYTES), b""):
                            transfer.hasher.update(chunk)
                self._check_space(entry, part.parent, (transfer.total or 0) - offset)
                # opened inside the try so an OSError becomes a write error; the `with` below closes it
                file = open(part, "ab" if append else "wb")  # noqa: SIM115
            except OSError as error:
                raise self._write_error(entry, error) from None
            try:
                with file:
                    self._stream(job, clock, response, file, transfer, offset, length)
            except OSError as error:  # closing flushes the buffer, which can fail on a full disk too
                raise self._write_error(entry, error) from None

    def _check_space(self, entry: CatalogEntry, folder: Path, needed: int) -> None:
        if needed <= 0:
            return
        free = shutil.disk_usage(folder).free
        if free < needed + DISK_MARGIN_BYTES:
            raise OSError(
                errno.ENOSPC,
                f"{_human_bytes(needed)} needed, {_human_bytes(free)} free in {folder}",
            )

    def _stream(self, job, clock, response, file, transfer: _Transfer, offset: int, length: int | None) -> None:
        entry = job.entry
        _set_read_timeout(response, self.read_timeout)
        done = offset
        received = 0
        started = time.monotonic()
        self._set(job, clock, state=DOWNLOADING, bytes_done=done, bytes_total=transfer.total, message="downloading")
        read = getattr(response, "read1", response.read)
        while True:
            if job.cancel_requested:
                _flush(file)
                raise _Cancelled
            try:
                chunk = read(CHUNK_BYTES)
            except TimeoutError:
                _flush(file)
                raise self._network_error(
                    entry, f"no data for {self.read_timeout:g} s after {done} bytes (timeout)", ERR_TIMEOUT
                ) from None
            except (OSError, http.client.HTTPException) as error:
                _flush(file)
                raise self._network_error(entry, f"connection lost after {done} bytes ({error!r})") from None
            if not chunk:
                break
            try:
                _write(file, chunk)
            except OSError as error:
                raise self._write_error(entry, error) from None
            transfer.hasher.update(chunk)
            done += len(chunk)
            received += len(chunk)
            elapsed = time.monotonic() - started
            speed = received / elapsed if elapsed > 0 else 0.0
            self._set(job, clock, force=False, bytes_done=done, speed_bps=speed)
        try:
            _flush(file, fsync=True)
        except OSError as error:
            raise self._write_error(entry, error) from None
        if length is not None and received < length:
            raise self._network_error(entry, f"the connection closed after {done} of {offset + length} bytes")


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _flush(file, fsync: bool = False) -> None:
    file.flush()
    if fsync:
        os.fsync(file.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (POSIX); directories cannot be opened for this on Windows."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
