"""One download's state, as the Models tab and the console see it (:class:`JobSnapshot`), and its handle."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path

from hypersd.catalog import CatalogEntry

QUEUED, DOWNLOADING, VERIFYING, DONE, FAILED, CANCELLED = (
    "queued", "downloading", "verifying", "done", "failed", "cancelled",
)  # fmt: skip
ACTIVE_STATES = frozenset({QUEUED, DOWNLOADING, VERIFYING})


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
    target_path: str
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

    def __init__(self, entry: CatalogEntry, url: str, target: Path, allow_unverified: bool):
        self.entry, self.allow_unverified = entry, allow_unverified
        self._lock, self._finished, self._cancel = threading.Lock(), threading.Event(), threading.Event()
        self._snapshot = JobSnapshot(entry.id, QUEUED, 0, entry.size, 0.0, "queued", url, str(target))

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            return self._snapshot

    def update(self, **changes) -> JobSnapshot:
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
        """Stop the job (its child process is terminated); the partial file is kept for resuming."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def progress_line(snapshot: JobSnapshot, name: str) -> str:
    """A tqdm-like console line: name, percent, done/total, speed, ETA."""
    head, eta, total, speed = human_bytes(snapshot.bytes_done), "", snapshot.bytes_total, snapshot.speed_bps
    if total:
        head = f"{100.0 * snapshot.bytes_done / total:5.1f}% {head}/{human_bytes(total)}"
        eta = f", ETA {max(0, total - snapshot.bytes_done) / speed:.0f} s" if speed > 0 else ""
    return f"Hyper-SD: {name} {head}, {human_bytes(speed)}/s{eta}"
