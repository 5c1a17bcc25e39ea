"""Catalog files through huggingface_hub's ``hf_hub_download``, verified before they are seen.

A copy on disk under any name with the catalog's sha256 (:class:`~hypersd.model_files.ModelFolders`) ends a
download without a request; offline mode or a full disk refuse it with the exact URL and folder.  Otherwise a child
process (``python -m hypersd.download``, :func:`fetch`) reads the hub's metadata, refuses a changed upstream file
before its body and has ``hf_hub_download`` fetch it into a staging folder beside WebUI's.  The Models tab's progress
is the growing partial file; Cancel kills the child and keeps that file for resuming.  The parent hashes the file
(:func:`~hypersd.download_verdict.verify_download`) and only then renames it into WebUI's folder.

huggingface_hub does the rest: ``HF_ENDPOINT``, ``HF_TOKEN``, proxies, redirects, ``Range`` resume, retries, the
``.incomplete`` file.  Not had from huggingface_hub 0.36, and why: Cancel (``hf_hub_download`` cannot be stopped
from another thread, hence the child); Xet is off in the child (``HF_HUB_DISABLE_XET``: with Xet there is no partial
file to measure and resume); its timeouts are whole seconds.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from hypersd.catalog import CATALOG, DEFAULT_ENDPOINT, CatalogEntry, file_url, page_url
from hypersd.download_job import (
    CANCELLED,
    DONE,
    DOWNLOADING,
    FAILED,
    VERIFYING,
    DownloadJob,
    JobSnapshot,
    human_bytes,
    progress_line,
)
from hypersd.download_verdict import verify_download
from hypersd.filehash import HashCache, sha256_file
from hypersd.model_files import STATUS_DOWNLOADING, FileStatus, ModelFolders

DISK_MARGIN_BYTES = 64 * 1024 * 1024  # keep a little room so WebUI itself can still write
ERR_NETWORK, ERR_TIMEOUT, ERR_HTTP, ERR_HASH, ERR_WRITE, ERR_OFFLINE, ERR_CANCELLED, ERR_INTERNAL = (
    "network", "timeout", "http", "hash_mismatch", "write", "offline", "cancelled", "internal",
)  # fmt: skip
WRITE_ERRNOS = (errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST)
_LIB = str(Path(__file__).resolve().parents[1])  # extensions_lib, for the child's PYTHONPATH


class _Failed(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind, self.message = kind, message


def resolve_endpoint(endpoint: str | None = None) -> str:
    """Explicit endpoint, else ``HF_ENDPOINT`` (read now, as the child will), else the public hub."""
    return (endpoint or os.environ.get("HF_ENDPOINT", "").strip() or DEFAULT_ENDPOINT).rstrip("/")


def offline_variable() -> str | None:
    """The variable that puts huggingface_hub offline, as it reads them (``HF_HUB_OFFLINE``, else
    ``TRANSFORMERS_OFFLINE``, the first one set decides), or None when it is online."""
    name = next((n for n in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if os.environ.get(n)), None)
    return name if name and os.environ[name].upper() in {"1", "ON", "YES", "TRUE"} else None


def is_sha256(value: str | None) -> bool:
    return bool(value) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


class DownloadManager:
    """Downloads, verifies and reports catalog files.  Thread-safe; one job per entry at a time.

    ``target_dirs(kind)`` gives the folder for "lora" / "unet" / "checkpoint"; ``search_dirs(kind)`` other folders
    where a copy may already be.  ``on_progress(snapshot)`` is called on every state change and at most every
    ``progress_interval`` s while bytes flow; ``console(line)`` gets a progress line at most every
    ``console_interval`` s and one per state change (None: silent).  Callback errors never stop a download.
    """

    def __init__(
        self,
        target_dirs: Callable[[str], str | os.PathLike],
        *,
        endpoint: str | None = None,
        timeout: float = 15.0,
        catalog: Iterable[CatalogEntry] = CATALOG,
        search_dirs: Callable[[str], Iterable[str | os.PathLike]] | None = None,
        on_progress: Callable[[JobSnapshot], None] | None = None,
        console: Callable[[str], None] | None = print,
        hash_cache: HashCache | None = None,
        max_parallel: int = 2,
        progress_interval: float = 0.25,
        console_interval: float = 2.0,
    ):
        self.files = ModelFolders(target_dirs, search_dirs, hash_cache)
        self.hash_cache = self.files.hash_cache
        self._endpoint, self.timeout = endpoint, timeout
        self._entries = {entry.id: entry for entry in catalog}
        self._on_progress, self._console = on_progress, console
        self._slots = threading.BoundedSemaphore(max(1, max_parallel))
        self.progress_interval, self.console_interval = progress_interval, console_interval
        self._lock = threading.Lock()
        self._jobs: dict[str, DownloadJob] = {}

    # --- lookups and what is on disk

    def entries(self) -> tuple[CatalogEntry, ...]:
        return tuple(self._entries.values())

    def entry(self, entry: str | CatalogEntry) -> CatalogEntry:
        if isinstance(entry, CatalogEntry):
            return entry
        if entry not in self._entries:
            raise KeyError(f"Hyper-SD: no catalog entry {entry!r}; known: {', '.join(sorted(self._entries))}.")
        return self._entries[entry]

    @property
    def endpoint(self) -> str:
        return resolve_endpoint(self._endpoint)

    def url_for(self, entry: str | CatalogEntry) -> str:
        return file_url(self.entry(entry), self.endpoint)

    def target_dir(self, entry: str | CatalogEntry) -> Path:
        return self.files.target_dir(self.entry(entry))

    def target_path(self, entry: str | CatalogEntry) -> Path:
        return self.files.target_path(self.entry(entry))

    def manual_step(self, entry: str | CatalogEntry) -> str:
        """The exact manual fix: which URL to fetch and where to save it."""
        entry = self.entry(entry)
        return (f"Download it by hand from {self.url_for(entry)} (page: {page_url(entry, self.endpoint)}) "
                f"and save it as {self.target_path(entry)}")  # fmt: skip

    def find_present(self, entry: str | CatalogEntry, search_dirs=None, progress=None) -> Path | None:
        return self.files.find_present(self.entry(entry), search_dirs, progress)

    def inspect(self, entry: str | CatalogEntry, *, deep: bool = True) -> FileStatus:
        entry, job = self.entry(entry), self.job(entry)
        if job is not None and job.active:
            return FileStatus(STATUS_DOWNLOADING, None, None, self.files.partial_bytes(entry), job.snapshot().message)
        return self.files.inspect(entry, deep=deep)

    # --- jobs

    def start(self, entry: str | CatalogEntry, *, allow_unverified: bool = False) -> DownloadJob:
        """Start (or join) the download of an entry; a second start while one runs returns the running job."""
        entry = self.entry(entry)
        with self._lock:
            running = self._jobs.get(entry.id)
            if running is not None and running.active:
                return running
            job = self._jobs[entry.id] = DownloadJob(
                entry, self.url_for(entry), self.target_path(entry), allow_unverified
            )
        threading.Thread(target=self._run, args=(job,), name=f"hypersd-download-{entry.id}", daemon=True).start()
        return job

    def job(self, entry: str | CatalogEntry) -> DownloadJob | None:
        with self._lock:
            return self._jobs.get(self.entry(entry).id)

    def jobs(self) -> dict[str, JobSnapshot]:
        with self._lock:
            jobs = dict(self._jobs)
        return {entry_id: job.snapshot() for entry_id, job in jobs.items()}

    def cancel(self, entry: str | CatalogEntry) -> bool:
        """Cancel a running job; True if there was one."""
        if (job := self.job(entry)) is None or not job.active:
            return False
        return job.cancel() or True

    # --- the worker

    def _set(self, job: DownloadJob, clock: dict, force: bool = True, **changes) -> None:
        snapshot, now = job.update(**changes), time.monotonic()
        if self._on_progress is not None and (force or now - clock.get("ui", -1e9) >= self.progress_interval):
            clock["ui"] = now
            try:
                self._on_progress(snapshot)
            except Exception as error:  # noqa: BLE001 - a broken UI callback must not kill the download
                print(f"Hyper-SD: progress callback failed: {error!r}")
        if self._console is not None and (force or now - clock.get("console", -1e9) >= self.console_interval):
            clock["console"] = now
            name = job.entry.local_filename
            line = progress_line(snapshot, name) if snapshot.state == DOWNLOADING else (
                f"Hyper-SD: {name}: {snapshot.state}: {snapshot.message}")  # fmt: skip
            with contextlib.suppress(Exception):
                self._console(line)

    def _run(self, job: DownloadJob) -> None:
        clock: dict = {}
        entry = job.entry
        try:
            self._set(job, clock, message="waiting for a free download slot")
            while not self._slots.acquire(timeout=0.1):
                if job.cancel_requested:
                    raise _Failed(ERR_CANCELLED, "")
            try:
                self._download(job, clock)
            finally:
                self._slots.release()
        except _Failed as failure:
            cancelled = failure.kind == ERR_CANCELLED
            message = (f"Hyper-SD: download of {entry.local_filename} cancelled; the partial file is kept for "
                       "resuming.") if cancelled else failure.message  # fmt: skip
            self._set(job, clock, state=CANCELLED if cancelled else FAILED, error_kind=failure.kind, message=message)
        except Exception as error:  # noqa: BLE001 - never leave a job "downloading" forever
            self._set(job, clock, state=FAILED, error_kind=ERR_INTERNAL, message=f"Hyper-SD: unexpected error "
                      f"downloading {entry.local_filename}: {error!r}. {self.manual_step(entry)}.")  # fmt: skip
        finally:
            job._finished.set()

    def _download(self, job: DownloadJob, clock: dict) -> None:
        entry = job.entry
        if entry.sha256 is not None:
            self._set(job, clock, state=VERIFYING, message="looking for an existing copy")
        hashing = lambda done, total: self._set(job, clock, False, bytes_done=done, bytes_total=total)  # noqa: E731
        present = self.files.find_present(entry, progress=hashing)
        if present is not None:
            size = present.stat().st_size
            self._set(job, clock, state=DONE, path=str(present), sha256=self.hash_cache.cached(present),
                      bytes_done=size, bytes_total=size, message=f"already present: {present}")  # fmt: skip
            return
        if (variable := offline_variable()) is not None:
            raise _Failed(ERR_OFFLINE, f"Hyper-SD: {variable} is set, so {entry.local_filename} was not "
                          f"downloaded. Unset {variable}, or {self.manual_step(entry)}.")  # fmt: skip
        staging = self.files.staging_dir(entry)
        try:
            self.target_dir(entry).mkdir(parents=True, exist_ok=True)
            staging.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise self._failure(entry, {"kind": "write", "errno": error.errno, "reason": str(error)}) from None
        needed, free = (entry.size or 0) - self.files.partial_bytes(entry), shutil.disk_usage(staging).free
        if needed > 0 and free < needed + DISK_MARGIN_BYTES:
            reason = f"{human_bytes(needed)} needed, {human_bytes(free)} free in {staging.parent}"
            raise self._failure(entry, {"kind": "write", "errno": errno.ENOSPC, "reason": reason})
        result = self._fetch(job, clock, staging)
        self._finish(job, clock, Path(result["path"]), result.get("hub_sha256"))
        shutil.rmtree(staging.parent if len(os.listdir(staging.parent)) == 1 else staging, ignore_errors=True)

    def _fetch(self, job: DownloadJob, clock: dict, staging: Path) -> dict:
        """Run :func:`fetch` in a child process; its answer once done.  Progress meanwhile: the partial file."""
        entry = job.entry
        args = {"repo_id": entry.repo, "filename": entry.filename, "revision": entry.revision,
                "local_dir": str(staging), "endpoint": self.endpoint, "timeout": self.timeout,
                "expect_sha256": entry.sha256 if entry.hash_is_confirmed else None}  # fmt: skip
        seconds = str(max(1, round(self.timeout)))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([_LIB, os.environ.get("PYTHONPATH", "")]),
               "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
               "HF_HUB_ETAG_TIMEOUT": seconds, "HF_HUB_DOWNLOAD_TIMEOUT": seconds}  # fmt: skip
        child = subprocess.Popen([sys.executable, "-m", "hypersd.download", json.dumps(args)], env=env,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)  # fmt: skip
        self._set(job, clock, state=DOWNLOADING, message="downloading")
        started, first = time.monotonic(), self.files.partial_bytes(entry)
        try:
            while child.poll() is None:
                if job.cancel_requested:
                    raise _Failed(ERR_CANCELLED, "")
                done = self.files.partial_bytes(entry)
                speed = (done - first) / max(1e-6, time.monotonic() - started)
                self._set(job, clock, False, bytes_done=done, speed_bps=speed)
                time.sleep(self.progress_interval or 0.05)
            answer = json.loads(child.stdout.read() or "{}")
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
            child.stdout.close()
        if answer.get("kind") != "done":
            raise self._failure(entry, answer or {"kind": ERR_NETWORK, "reason": "the download process ended"})
        return answer

    def _finish(self, job: DownloadJob, clock: dict, staged: Path, hub_sha256: str | None) -> None:
        entry, target = job.entry, self.target_path(job.entry)
        self._set(job, clock, state=VERIFYING, message="verifying sha256")
        actual = sha256_file(staged)  # not cached: the staged path is gone after the rename
        verdict = verify_download(entry, actual, hub_sha256, job.allow_unverified)
        if not verdict.ok:
            staged.unlink(missing_ok=True)
            raise _Failed(ERR_HASH, verdict.message)
        try:
            os.replace(staged, target)
        except OSError as error:
            raise self._failure(entry, {"kind": "write", "errno": error.errno, "reason": str(error)}) from None
        with contextlib.suppress(OSError):
            self.hash_cache.remember(target, actual)
        for warning in verdict.warnings if self._console is not None else ():
            self._console(warning)
        self._set(job, clock, state=DONE, path=str(target), sha256=actual, warnings=verdict.warnings,
                  message=f"downloaded {entry.local_filename}: {verdict.message}")  # fmt: skip

    def _failure(self, entry: CatalogEntry, event: dict) -> _Failed:
        """The user's message for a failure reported as data (by the child or by our own checks)."""
        kind, code, reason = event.get("kind", ERR_NETWORK), event.get("code"), event.get("reason", "")
        where, manual = f"from {self.url_for(entry)}", self.manual_step(entry)
        if kind == "write":
            why = {errno.ENOSPC: "the disk is full", errno.EACCES: "no permission to write there"}.get(
                event.get("errno")
            )
            return _Failed(ERR_WRITE, f"Hyper-SD: cannot write {entry.local_filename} to {self.target_dir(entry)}: "
                           f"{why or 'the folder cannot be written'} ({reason}). Free space or fix the folder's "
                           f"permissions, then download again (a partial file is resumed); or {manual}.")  # fmt: skip
        if kind == "changed":
            return _Failed(ERR_HASH, f"Hyper-SD: the hub now serves another {entry.local_filename} (its sha256 is "
                           f"{event['hub_sha256']}, the catalog expects {entry.sha256}); nothing was downloaded. "
                           "The catalog is outdated: report it.")  # fmt: skip
        if kind == "http":
            hint = {404: f"the hub has no such file (renamed or removed?); check {self.endpoint}/{entry.repo}",
                    401: "the hub refused access: accept the model's licence on its page and set HF_TOKEN (or run "
                         "`huggingface-cli login`)", 429: "too many requests: wait a few minutes"}  # fmt: skip
            hint[403] = hint[401]
            return _Failed(ERR_HTTP, f"Hyper-SD: could not download {entry.local_filename}: HTTP {code} {where}: "
                           f"{hint.get(code, 'the server failed')} ({reason}). {manual}.")  # fmt: skip
        kind = kind if kind in (ERR_TIMEOUT, ERR_OFFLINE) else ERR_NETWORK
        return _Failed(kind, f"Hyper-SD: could not download {entry.local_filename} {where}: {reason}"
                       f"{' (timeout)' if kind == ERR_TIMEOUT else ''}. Check the network (proxy: HTTPS_PROXY; "
                       f"mirror: HF_ENDPOINT) and try again (a partial file is resumed); or {manual}.")  # fmt: skip


def classify(error: BaseException) -> dict:
    """A failure in the child as data (the parent words it): kind, HTTP status, errno and a one-line reason."""
    chain = [error]
    while (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None and nxt not in chain:
        chain.append(nxt)
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    code = next((c for e in chain if (c := getattr(getattr(e, "response", None), "status_code", None))), None)
    number = next((e.errno for e in chain if isinstance(e, OSError) and e.errno in WRITE_ERRNOS), None)
    if code is not None:
        kind = ERR_HTTP
    elif any(type(e).__name__ == "OfflineModeIsEnabled" for e in chain):
        kind = ERR_OFFLINE
    elif number is not None:
        kind = ERR_WRITE
    elif any(isinstance(e, TimeoutError) or "Timeout" in type(e).__name__ for e in chain):
        kind = ERR_TIMEOUT
    else:
        kind = ERR_NETWORK
    return {"kind": kind, "code": code, "errno": number, "reason": reason}


def fetch(job: dict) -> dict:
    """The child's work: the hub's metadata, a changed file refused before its body, then ``hf_hub_download``."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    where = {key: job[key] for key in ("repo_id", "filename", "revision")}
    try:
        meta = get_hf_file_metadata(hf_hub_url(**where, endpoint=job["endpoint"]), timeout=job["timeout"])
        etag = str(meta.etag or "").strip('"').lower()
        hub_sha256 = etag if is_sha256(etag) else None
        if job["expect_sha256"] and hub_sha256 and hub_sha256 != job["expect_sha256"]:
            return {"kind": "changed", "hub_sha256": hub_sha256}
        path = hf_hub_download(**where, local_dir=job["local_dir"], endpoint=job["endpoint"])
    except Exception as error:  # noqa: BLE001 - every failure goes back to the parent as data
        return classify(error)
    return {"kind": "done", "path": path, "hub_sha256": hub_sha256}


if __name__ == "__main__":
    print(json.dumps(fetch(json.loads(sys.argv[1]))), flush=True)
