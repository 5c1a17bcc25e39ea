"""What the Models panel shows and does, without any UI toolkit (the WebUI tab only wires these to gradio).

Everything here works on a :class:`hypersd.download.DownloadManager` (or a stand-in with the same methods):
the table rows, the progress text, starting downloads, and the deep "Verify" check.  Table refreshes use
``inspect(deep=False)`` so that no big file is hashed on a refresh; hashing happens only in :func:`verify`
and inside download jobs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hypersd.catalog import CatalogEntry
from hypersd.download_job import JobSnapshot, progress_line
from hypersd.model_files import CORRUPT, MISSING, PRESENT, STATUS_DOWNLOADING

TAB_TITLE = "Hyper-SD Models"
HEADERS = ("id", "file", "base", "kind", "size", "hash", "status", "details")
BASE_LABELS = {"sd15": "SD1.5", "sdxl": "SDXL"}
STATUS_LABELS = {PRESENT: "present", MISSING: "missing", STATUS_DOWNLOADING: "downloading", CORRUPT: "corrupt"}


def human_size(size: int | None, exact: bool = True) -> str:
    """Decimal units like the hub's file listing (269,127,064 → "269.1 MB"); "~" marks a family estimate."""
    if size is None:
        return "unknown"
    value, unit = float(size), "B"
    for next_unit in ("KB", "MB", "GB", "TB"):
        if value < 1000:
            break
        value, unit = value / 1000, next_unit
    text = f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
    return text if exact else "~" + text


def hash_level(entry: CatalogEntry) -> str:
    """A / B / B+ as in CATALOG_FACTS.md; "none" when the catalog has no sha256 for the file."""
    return entry.verified if entry.sha256 is not None and entry.verified else "none"


@dataclass(frozen=True)
class ModelRow:
    id: str
    file: str
    base: str
    kind: str
    size: str
    hash: str
    status: str
    details: str

    def cells(self) -> list[str]:
        return [self.id, self.file, self.base, self.kind, self.size, self.hash, self.status, self.details]


def job_text(snapshot: JobSnapshot) -> str:
    """Short progress text of a job for the table's details column."""
    if snapshot.state in ("queued", "verifying"):
        return snapshot.message or snapshot.state
    if snapshot.fraction is not None:
        return f"{100 * snapshot.fraction:.0f} % of {human_size(snapshot.bytes_total)}"
    return f"{human_size(snapshot.bytes_done)} so far"


def build_rows(manager) -> list[ModelRow]:
    """One row per catalog entry, cheap: no file is hashed (``inspect(deep=False)``)."""
    jobs = manager.jobs()
    rows = []
    for entry in manager.entries():
        info = manager.inspect(entry, deep=False)
        status = STATUS_LABELS.get(info.status, info.status)
        snapshot = jobs.get(entry.id)
        if snapshot is not None and snapshot.active:
            details = job_text(snapshot)
        elif snapshot is not None and snapshot.state == "failed" and info.status != PRESENT:
            details = "last download failed: " + snapshot.message
        else:
            details = info.message
        rows.append(
            ModelRow(
                entry.id,
                entry.local_filename,
                BASE_LABELS.get(entry.base, entry.base),
                entry.kind,
                human_size(entry.size, entry.size_exact),
                hash_level(entry),
                status,
                details,
            )
        )
    return rows


def table(rows: Iterable[ModelRow]) -> list[list[str]]:
    return [row.cells() for row in rows]


def progress_text(manager, names: Mapping[str, str] | None = None) -> str:
    """Markdown: one line per job of this session, newest state; running ones first."""
    jobs = manager.jobs()
    if not jobs:
        return "No downloads in this session."
    names = dict(names or {})
    lines = []
    for entry_id, snapshot in sorted(jobs.items(), key=lambda item: (not item[1].active, item[0])):
        name = names.get(entry_id, entry_id)
        if snapshot.state == "downloading":
            text = progress_line(snapshot, name).removeprefix("Hyper-SD: ")
        elif snapshot.state == "done":
            text = f"{name}: done, {snapshot.path or snapshot.target_path}"
            if snapshot.warnings:
                text += " (" + "; ".join(snapshot.warnings) + ")"
        else:
            text = f"{name}: {snapshot.state}: {snapshot.message}"
        lines.append("- " + text)
    return "\n".join(lines)


def any_active(manager) -> bool:
    return any(snapshot.active for snapshot in manager.jobs().values())


MAX_ID_LENGTH = 100  # longer than any catalog id: a longer "id" is refused without being looked up


def selection_problem(manager, entry_ids: object) -> str | None:
    """None when ``entry_ids`` is a list of catalog ids (or empty); else what is wrong and what to do.

    The Models tab's checkbox list only sends catalog ids, but gradio's HTTP API passes any JSON value on.
    """
    if entry_ids is None:
        return None
    if not isinstance(entry_ids, (list, tuple)):
        return f"Hyper-SD: the selection must be a list of catalog ids, got {type(entry_ids).__name__}"
    if not entry_ids:
        return None
    known = {entry.id for entry in manager.entries()}
    bad = [value for value in entry_ids if not isinstance(value, str) or value not in known]
    if bad:
        shown = ", ".join(repr(v) if not isinstance(v, str) or len(v) <= MAX_ID_LENGTH else "a long text" for v in bad)
        return f"Hyper-SD: not a catalog id: {shown}; pick entries from the list (press Refresh if it is old)."
    return None


def start_downloads(manager, entry_ids: Iterable[str], allow_unverified: bool = False) -> str:
    """Start a download for every selected entry that is not present yet; returns what happened (markdown)."""
    problem = selection_problem(manager, entry_ids)
    if problem:
        return problem
    if not isinstance(allow_unverified, bool):
        return f"Hyper-SD: 'accept a file whose hash differs' must be true or false, got {allow_unverified!r:.40}"
    entry_ids = list(entry_ids or [])
    if not entry_ids:
        return "Hyper-SD: select one or more entries first."
    lines = []
    for entry_id in entry_ids:
        entry = manager.entry(entry_id)
        info = manager.inspect(entry, deep=False)
        if info.status == PRESENT:
            lines.append(f"- {entry.local_filename}: already present ({info.path}), not downloaded again")
            continue
        manager.start(entry, allow_unverified=bool(allow_unverified))
        lines.append(f"- {entry.local_filename}: download started → {manager.target_path(entry)}")
    return "\n".join(lines)


def cancel_downloads(manager, entry_ids: Iterable[str]) -> str:
    problem = selection_problem(manager, entry_ids)
    if problem:
        return problem
    entry_ids = list(entry_ids or [])
    cancelled = [entry_id for entry_id in entry_ids if manager.cancel(entry_id)]
    if not cancelled:
        return "Hyper-SD: none of the selected entries is downloading."
    return "Cancelled (the partial file is kept and resumes next time): " + ", ".join(cancelled)


def verify(manager, entry_ids: Iterable[str] | None = None) -> str:
    """Hash the selected (default: all) entries' files: slow for big files, so only on an explicit request."""
    problem = selection_problem(manager, entry_ids)
    if problem:
        return problem
    ids = list(entry_ids or []) or [entry.id for entry in manager.entries()]
    lines = []
    for entry_id in ids:
        entry = manager.entry(entry_id)
        info = manager.inspect(entry, deep=True)
        where = f" ({info.path})" if info.path else ""
        lines.append(f"- {entry.local_filename}: {info.status}{where}: {info.message}")
    return "\n".join(lines)


def manual_steps(manager, entry_ids: Iterable[str]) -> str:
    """The exact manual step (URL and target path) for each selected entry."""
    problem = selection_problem(manager, entry_ids)
    if problem:
        return problem
    return "\n".join(f"- {manager.manual_step(entry_id)}" for entry_id in entry_ids or [])


def missing_file_hint(manager, entry_id: str) -> str:
    """The sentence for the accordion when a preset's file is missing: points at the tab and gives the manual step."""
    entry = manager.entry(entry_id)
    return (
        f"Hyper-SD: {entry.local_filename} is missing. Download it in the '{TAB_TITLE}' tab "
        f"(select '{entry.id}', press Download), or by hand: {manager.manual_step(entry)}."
    )
