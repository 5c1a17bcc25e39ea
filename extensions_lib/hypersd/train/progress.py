"""Follow the training engine's JSON-lines log (``<run>/log.jsonl``) and turn it into progress for the UI.

Events (hypersd.distill.engine.run_distillation and distill.cache.build_cache), each with ``time``: start, cache,
cached, resume, step, checkpoint, export, stage_end, interrupted, done, error. A session logs ``start`` once the
model is loaded, ``cache`` while it encodes, ``cached``, then ``resume`` when it continues a checkpoint. Sessions
append to the same log; a run started again with ``--overwrite`` deletes and recreates it; the last line may be
partial while it is being written.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ETA_WINDOW = 50  # the most recent step records of the current session that give the rate
HEAD_BYTES = 64  # the start of the log, remembered to notice a file replaced in place (same inode, longer)
_RECORD_START = b'{"time"'  # every engine record starts like this: recovers a record glued to a torn line


@dataclass
class TrainProgress:
    phase: str = "starting"  # starting | caching | preparing | training | reporting | done | interrupted | error
    base: str | None = None  # "sd15" | "sdxl"
    stages: tuple[int | str, ...] = ()  # k (an int) for TSCD stages, the name for dmd / feedback
    steps_per_stage: int = 0
    stage_steps: dict[str, int] = field(default_factory=dict)  # per-stage overrides of steps_per_stage
    total_steps: int = 0
    step: int = 0  # global step, 1-based; 0 before the first
    stage: int | str | None = None  # the current stage's k (or name)
    stage_index: int = 0  # 1-based position of ``stage`` in ``stages``; 0 when unknown
    loss: float | None = None  # the last logged loss
    losses: list[tuple[int, float, int | str]] = field(default_factory=list)  # (step, loss, k) of the whole run
    stage_ends: list[tuple[int | str, int]] = field(default_factory=list)  # (k, global step)
    last_checkpoint: tuple[int, str] | None = None  # (global step, folder)
    exports: list[str] = field(default_factory=list)
    final: str | None = None
    error: str | None = None
    samples_per_s: float | None = None
    eta_seconds: float | None = None
    updated: float | None = None  # the ``time`` of the last record
    cache: tuple[str, int, int] | None = None  # (what, done, of) while caching or preparing a stage
    report: str | None = None  # the quality report's HTML once it is written


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def stage_id(value: Any) -> int | str:
    """How the log names a stage: k as an int for TSCD stages ("8" or 8), the name for the others."""
    text = str(value).strip()
    return int(text) if text.isdigit() else text


def stage_at(
    step: int, stages: tuple[int | str, ...], steps_per_stage: int, stage_steps: dict[str, int] | None = None
) -> int | str | None:
    """The stage that the step after ``step`` belongs to (the stage a resumed run continues)."""
    if not stages or steps_per_stage <= 0:
        return None
    end = 0
    for stage in stages:
        end += int((stage_steps or {}).get(str(stage), steps_per_stage))
        if step < end:
            return stage
    return stages[-1]


@dataclass
class _LogReader:
    """Folds the log's records into a :class:`TrainProgress`, one handler per event."""

    p: TrainProgress = field(default_factory=TrainProgress)
    by_step: dict[int, tuple[float, int | str]] = field(default_factory=dict)
    stage_ends: dict[int | str, int] = field(default_factory=dict)  # k -> global step
    exports: dict[str, None] = field(default_factory=dict)  # ordered set: a re-run stage exports the same path again
    session: list[tuple[float, int]] = field(default_factory=list)  # (time, step) of this session's step records
    report_times: dict[int, float] = field(default_factory=dict)  # report_progress "done" -> its time
    new_run: bool = False  # a "start" without "resume" so far: its first step begins the run again

    def read(self, rec: dict[str, Any]) -> None:
        time = _float(rec.get("time"))
        if time is not None:
            self.p.updated = time
        handler = getattr(self, f"on_{rec.get('event')}", None)
        if callable(handler):
            handler(rec, time)

    def on_start(self, rec: dict[str, Any], _time: float | None) -> None:
        p, config = self.p, rec.get("config") or {}
        p.stages = tuple(stage_id(k) for k in config.get("stages") or ())
        p.steps_per_stage = _int(config.get("steps_per_stage"))
        p.stage_steps = {str(k): _int(v) for k, v in (config.get("stage_steps") or {}).items()}
        p.total_steps = sum(p.stage_steps.get(str(k), p.steps_per_stage) for k in p.stages)
        p.base = rec.get("base", p.base)
        p.phase, p.error, p.final, p.cache, p.eta_seconds = "caching", None, None, None, None
        self.session, self.new_run = [], True

    def on_cache(self, rec: dict[str, Any], _time: float | None) -> None:
        self.p.phase = "caching"
        self.p.cache = (str(rec.get("what", "")), _int(rec.get("done")), _int(rec.get("of")))

    def on_prepare(self, rec: dict[str, Any], _time: float | None) -> None:
        """A stage's set-up before its first step (score distillation's teacher pairs)."""
        self.p.phase, self.p.stage = "preparing", stage_id(rec.get("stage", ""))
        self.p.cache = (str(rec.get("what", "")), _int(rec.get("done")), _int(rec.get("of")))

    def on_cached(self, _rec: dict[str, Any], _time: float | None) -> None:
        self.p.phase, self.p.cache = "training", None

    def on_resume(self, rec: dict[str, Any], _time: float | None) -> None:
        p = self.p
        p.step = _int(rec.get("global_step"), p.step)
        self.by_step = {s: v for s, v in self.by_step.items() if s <= p.step}
        self.stage_ends = {k: s for k, s in self.stage_ends.items() if s <= p.step}
        p.last_checkpoint = (p.step, str(rec.get("from", "")))
        p.phase, p.stage, p.cache = "training", None, None
        self.session, self.new_run = [], False

    def on_step(self, rec: dict[str, Any], time: float | None) -> None:
        step = _int(rec.get("step"), -1)
        if step < 0:
            return
        if self.new_run:
            self.by_step, self.stage_ends, self.exports, self.p.last_checkpoint = {}, {}, {}, None
            self.new_run = False
        loss = _float(rec.get("loss"))
        k = stage_id(rec.get("stage", ""))
        self.by_step[step] = (math.nan if loss is None else loss, k)
        p = self.p
        p.step, p.loss, p.stage, p.phase, p.cache = step, loss, k, "training", None
        p.samples_per_s = _float(rec.get("samples_per_s"))
        if time is not None:
            self.session.append((time, step))

    def on_checkpoint(self, rec: dict[str, Any], _time: float | None) -> None:
        self.p.last_checkpoint = (_int(rec.get("global_step")), str(rec.get("path", "")))

    def on_export(self, rec: dict[str, Any], _time: float | None) -> None:
        self.exports[str(rec.get("path", ""))] = None

    def on_stage_end(self, rec: dict[str, Any], _time: float | None) -> None:
        self.stage_ends[stage_id(rec.get("stage", ""))] = _int(rec.get("global_step"))

    def on_report_start(self, _rec: dict[str, Any], _time: float | None) -> None:
        self.p.phase, self.p.eta_seconds, self.p.cache = "reporting", None, None
        self.report_times = {}

    def on_report_progress(self, rec: dict[str, Any], time: float | None) -> None:
        """What the report measures now (the teacher, then each LoRA); the ETA once a LoRA has been measured (the
        LoRAs cost about the same; the teacher's line does not count)."""
        p = self.p
        done, of = _int(rec.get("done")), _int(rec.get("of"))
        p.phase, p.cache = "reporting", (str(rec.get("what", "")), done, of)
        if time is not None:
            self.report_times[done] = time
        first, now = self.report_times.get(1), self.report_times.get(done)
        p.eta_seconds = (now - first) / (done - 1) * (of - done) if done > 1 and first and now else None

    def on_report(self, rec: dict[str, Any], _time: float | None) -> None:
        self.p.report = str(rec.get("path") or "") or None

    def on_interrupted(self, rec: dict[str, Any], _time: float | None) -> None:
        self.p.phase, self.p.step = "interrupted", _int(rec.get("global_step"), self.p.step)

    def on_done(self, rec: dict[str, Any], _time: float | None) -> None:
        self.p.phase, self.p.step = "done", _int(rec.get("global_step"), self.p.step)
        final = rec.get("final")
        self.p.final = str(final) if final else None

    def on_error(self, rec: dict[str, Any], _time: float | None) -> None:
        self.p.phase, self.p.error = "error", str(rec.get("message") or "unknown error")

    def progress(self) -> TrainProgress:
        p = self.p
        p.losses = [(s, loss, k) for s, (loss, k) in sorted(self.by_step.items())]
        p.stage_ends = sorted(((k, s) for k, s in self.stage_ends.items()), key=lambda item: item[1])
        p.exports = list(self.exports)
        if p.stage is None:
            p.stage = stage_at(p.step, p.stages, p.steps_per_stage, p.stage_steps)
        if p.stage is not None and p.stage in p.stages:
            p.stage_index = p.stages.index(p.stage) + 1
        if p.phase != "reporting":  # the report's ETA comes from its own records
            p.eta_seconds = _eta(self.session[-ETA_WINDOW:], p) if p.phase == "training" else None
        return p


def progress_from_records(records: Iterable[dict[str, Any]]) -> TrainProgress:
    """The progress after ``records`` (the log's lines, oldest first).

    A resume drops what was logged after its checkpoint's step (the resumed run logs those steps again); a
    session that starts without a resume (a run folder without a checkpoint) starts the curve again at its first
    step. The ETA uses only the current session's step records: a pause between sessions is not a slow step.
    """
    reader = _LogReader()
    for rec in records:
        if isinstance(rec, dict):
            reader.read(rec)
    return reader.progress()


def _eta(recent: list[tuple[float, int]], p: TrainProgress) -> float | None:
    if len(recent) < 2 or not p.total_steps:
        return None
    (t0, s0), (t1, s1) = recent[0], recent[-1]
    if t1 <= t0 or s1 <= s0:
        return None
    steps_per_second = (s1 - s0) / (t1 - t0)
    return max(0.0, (p.total_steps - p.step) / steps_per_second)


def _parse_line(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        # a line torn by a killed writer, with the next session's record appended to it: keep that record
        start = line.rfind(_RECORD_START)
        if start <= 0:
            return None
        try:
            record = json.loads(line[start:])
        except ValueError:
            return None
    return record if isinstance(record, dict) else None


class LogFollower:
    """Reads only what was appended since the last :meth:`poll`; starts again when the file is replaced.

    A trailing line without its newline is kept for the next poll. The log counts as replaced when its inode
    changes, when it shrinks, or when its first bytes differ (a new file that reuses the inode and is longer).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = pathlib.Path(path)
        self._offset = 0
        self._inode: int | None = None
        self._head = b""
        self._partial = b""
        self._records: list[dict[str, Any]] = []
        self._progress: TrainProgress | None = None
        self._lock = threading.Lock()  # the UI's timer, Cancel and the job's thread may poll at the same time

    def _reset(self, inode: int | None) -> None:
        self._offset, self._inode, self._head, self._partial = 0, inode, b"", b""
        self._records, self._progress = [], None

    def poll(self) -> TrainProgress:
        with self._lock:
            return self._poll()

    def _poll(self) -> TrainProgress:
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed below; a missing file is not an error here
        except OSError:
            self._reset(None)
            return TrainProgress()
        with handle:
            stat = os.fstat(handle.fileno())
            head = handle.read(len(self._head)) if self._head else b""
            if stat.st_ino != self._inode or stat.st_size < self._offset or head != self._head:
                self._reset(stat.st_ino)
            handle.seek(self._offset)
            chunk = handle.read()
        if self._offset == 0:
            self._head = chunk[:HEAD_BYTES]
        self._offset += len(chunk)
        if chunk or self._progress is None:
            lines = (self._partial + chunk).split(b"\n")
            self._partial = lines.pop()  # b"" after a complete line
            self._records += [r for r in map(_parse_line, lines) if r is not None]
            self._progress = progress_from_records(self._records)
        return self._progress


def format_duration(seconds: float | None) -> str:
    """``45s``, ``3m 20s``, ``1h 02m``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _percent(step: int, total: int) -> int:
    percent = math.floor(100 * step / total + 0.5)  # half up: 0.5% shows as 1%
    return min(percent, 99) if step < total else percent  # 100% only when every step is done


def _stage_name(stage: int | str | None) -> str:
    return f"k={stage}" if isinstance(stage, int) else str(stage)


def format_progress(p: TrainProgress) -> str:
    """One line for the UI."""
    if p.phase == "starting":
        return "Starting: loading the model…"
    if p.phase == "caching":
        if p.cache and p.cache[2]:
            return f"Caching latents and captions… ({p.cache[0]} {p.cache[1]} / {p.cache[2]})"
        return "Caching latents and captions…"
    if p.phase == "preparing" and p.cache:
        return f"Stage {_stage_name(p.stage)}: preparing {p.cache[0]}… ({p.cache[1]} / {p.cache[2]})"
    if p.phase == "reporting":
        line = f"Measuring the LoRAs for the quality report (after {p.step} steps)…"
        if p.cache and p.cache[2]:
            line += f" ({p.cache[0]}: {p.cache[1] + 1} of {p.cache[2]}"
            line += f", ETA {format_duration(p.eta_seconds)})" if p.eta_seconds is not None else ")"
        return line
    if p.phase == "done":
        return f"Done after {p.step} steps: {p.final}" if p.final else f"Done after {p.step} steps"
    if p.phase == "interrupted":
        if p.last_checkpoint is None:
            return f"Stopped at step {p.step} before the first checkpoint — press Train to start again"
        if p.last_checkpoint[0] == p.step:
            return f"Stopped at step {p.step}; a checkpoint was saved — press Resume"
        return f"Stopped at step {p.step}; the last checkpoint is at step {p.last_checkpoint[0]} — press Resume"
    if p.phase == "error":
        return f"Failed: {p.error}"
    parts = []
    if p.stage is not None and p.stage_index:
        parts.append(f"Stage {_stage_name(p.stage)} ({p.stage_index} of {len(p.stages)})")
    if p.total_steps:
        parts.append(f"step {p.step} / {p.total_steps} ({_percent(p.step, p.total_steps)}%)")
    else:
        parts.append(f"step {p.step}")
    if p.loss is not None:
        parts.append(f"loss {p.loss:.4g}")
    if p.samples_per_s:
        parts.append(f"{p.samples_per_s:.3g} samples/s")
    if p.eta_seconds is not None:
        parts.append(f"ETA {format_duration(p.eta_seconds)}")
    return " · ".join(parts)
