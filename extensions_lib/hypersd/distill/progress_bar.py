"""Progress on the console: a tqdm bar with ETA on a terminal, a plain line every N steps when output is not one
(a log file, the Train tab's console capture, CI), so that a long run never stays silent."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def plain_line(step: int, total: int, stage: str, loss: float, rate: float | None, eta: float | None) -> str:
    parts = [f"Hyper-SD: step {step}/{total}", f"stage {stage}", f"loss {loss:.4g}"]
    if rate is not None:
        parts.append(f"{rate:.2f} steps/s")
    if eta is not None:
        parts.append(f"ETA {format_seconds(eta)}")
    return ", ".join(parts)


def phase_line(record: dict[str, Any]) -> str | None:
    """The console line for a log record of the minutes outside the steps (caching, a stage's set-up, the quality
    report), or None for the others (the steps have the bar)."""
    event, done, of = record.get("event"), record.get("done"), record.get("of")
    count = f" ({done}/{of})" if done is not None and of else ""
    if event == "cache":
        return f"Hyper-SD: caching {record.get('what', '')}{count}"
    if event == "prepare":
        return f"Hyper-SD: stage {record.get('stage', '')}: preparing {record.get('what', '')}{count}"
    if event == "report_progress":
        return f"Hyper-SD: quality report: measuring {record.get('what', '')} ({int(done or 0) + 1}/{of})"
    return None


class ProgressBar:
    """``update(record, stage_label)`` after each step; ``close()`` at the end."""

    def __init__(
        self, total: int, initial: int, *, enabled: bool = True, stream: TextIO | None = None, every: int | None = None
    ):
        self.total, self.step, self.enabled = total, initial, enabled
        self.stream = stream or sys.stderr
        self.every = every or max(1, min(50, total // 20))
        self.bar: Any = None
        self.started = time.perf_counter()
        self.first_step = initial
        if enabled and _is_terminal(self.stream):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=self.stream)

    def update(self, record: dict[str, Any], stage: str) -> None:
        self.step = int(record.get("step", self.step + 1))
        if not self.enabled:
            return
        loss = float(record.get("loss", float("nan")))
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(stage=stage, loss=f"{loss:.4g}", sps=f"{record.get('samples_per_s', 0):.2f}")
            return
        if self.step % self.every and self.step != self.total:
            return
        done = self.step - self.first_step
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if done > 0 and elapsed > 0 else None
        eta = (self.total - self.step) / rate if rate else None
        print(plain_line(self.step, self.total, stage, loss, rate, eta), file=self.stream, flush=True)

    def write(self, line: str) -> None:
        """A line above the bar (or a plain line); nothing when the bar is off (``--no-progress``)."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
