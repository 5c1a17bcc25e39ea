"""One distillation job at a time, run as ``python -m hypersd distill`` in a subprocess.

A crash or an out-of-memory in the training process never takes the host (WebUI) down: the job is a child process
in its own process group, its console goes to a file, and progress comes from the engine's JSON-lines log.

Files of a job named ``out`` in the work folder (not the Lora folder: WebUI lists every ``.pt`` below it)::

    <out>.job.json       the request (settings, model, data), the pid while running: Resume reads it back
    <out>.config.json    the settings handed to the engine (``--config``)
    <out>.console.log    stdout + stderr of every launch, appended
    <out>.stop           created by Cancel: the engine saves a checkpoint and exits 130 (works on every platform
                         and for every ``accelerate`` process)
    <out>.run/           the engine's run folder: log.jsonl, checkpoints/, samples/stage-*.png, report.html

The host plugs in through :class:`Hooks` (free VRAM before, take it back after, make a comparison grid); this module
knows nothing about WebUI and is tested with a tiny engine config on the CPU.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from hypersd.train import layout
from hypersd.train.job_launch import (
    EXIT_BAD_ARGS,
    EXIT_DONE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXTENSIONS_LIB,
    LAUNCH_MESSAGES,
    JobError,
    JobFiles,
    TrainRequest,
    _spawn,
    build_command,
    child_environment,
    engine_config,
    kill_tree,
    pid_alive,
    tail,
)
from hypersd.train.progress import LogFollower, TrainProgress


def shown_message(state: str, phase: str, message: str) -> str:
    """The job's line: its launch message ("Starting the training process…") gives way to "Training…" once the
    engine is past loading and caching (training, preparing a stage, measuring the report)."""
    if state == "running" and phase not in ("starting", "caching") and message in LAUNCH_MESSAGES:
        return "Training…"
    return message


class Hooks:
    """What the host does around a job. ``before`` may block (e.g. wait for the host's queue); ``after`` runs
    whenever ``before`` returned, also after errors. Both return a message for the user (or None)."""

    def before(self, job: Job) -> str | None:
        return None

    def after(self, job: Job) -> str | None:
        return None


@dataclass
class JobStatus:
    state: str  # "idle" | "waiting" | "running" | "stopping" | "finishing" | "finished"
    out: str | None = None
    result: str | None = None  # "done" | "interrupted" | "error" | "bad-settings" | "crashed" | "cancelled"
    message: str = ""
    returncode: int | None = None
    progress: TrainProgress | None = None
    notes: list[str] = field(default_factory=list)
    console: str = ""
    sample_grids: list[pathlib.Path] = field(default_factory=list)
    final_lora: pathlib.Path | None = None
    comparison: pathlib.Path | None = None
    report: pathlib.Path | None = None  # the quality report's HTML, once the engine wrote it

    @property
    def active(self) -> bool:
        return self.state not in ("idle", "finished")


class Job:
    def __init__(self, request: TrainRequest, resume: bool, overwrite: bool) -> None:
        self.request = request
        self.resume = resume
        self.overwrite = overwrite
        self.files = JobFiles(pathlib.Path(request.work_dir), request.out)
        self.follower = LogFollower(self.files.log)
        self.state = "waiting"
        self.result: str | None = None
        self.message = "Waiting for WebUI to finish what it is doing…"
        self.returncode: int | None = None
        self.notes: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None
        self.cancel_requested = False
        self.kill_requested = False
        self.comparison: pathlib.Path | None = None
        self.launched = 0.0  # time.time() of the launch: log records older than this are from earlier runs
        self.done = threading.Event()
        self.lock = threading.Lock()

    def note(self, text: str | None) -> None:
        if text:
            self.notes.append(text)

    @property
    def final_lora(self) -> pathlib.Path:
        return layout.final_lora(pathlib.Path(self.request.output_dir), self.request.out)

    def status(self) -> JobStatus:
        progress = self.follower.poll()
        message = shown_message(self.state, progress.phase, self.message)
        return JobStatus(
            state=self.state,
            out=self.request.out,
            result=self.result,
            message=message,
            returncode=self.returncode,
            progress=progress,
            notes=list(self.notes),
            console=tail(self.files.console),
            sample_grids=self.files.sample_grids(),
            final_lora=self.final_lora if self.final_lora.is_file() and self.result == "done" else None,
            comparison=self.comparison,
            report=self.files.report if self.files.report.is_file() else None,
        )


def write_job_file(files: JobFiles, request: TrainRequest, **extra: Any) -> None:
    files.work_dir.mkdir(parents=True, exist_ok=True)
    tmp = files.job.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"request": request.to_dict(), **extra}, indent=2), encoding="utf-8")
    os.replace(tmp, files.job)


def read_job_file(path: pathlib.Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("request"), dict) else None


def describe_exit(returncode: int, progress: TrainProgress, console: str, files: JobFiles) -> tuple[str, str]:
    """(result, message) for a finished engine process."""
    last_line = next((line for line in reversed(console.splitlines()) if line.strip()), "")
    if returncode == EXIT_DONE:
        return "done", f"Done after {progress.step} steps: {progress.final or 'the LoRA was written'}"
    if returncode == EXIT_INTERRUPTED:
        step = files.checkpoint_step()
        where = f"a checkpoint at step {step} was saved" if step is not None else "no checkpoint was needed"
        return "interrupted", f"Stopped at step {progress.step}; {where}. Press Resume to continue."
    if returncode == EXIT_BAD_ARGS:
        return "bad-settings", f"The engine refused the settings: {last_line}"
    if returncode == EXIT_ERROR:
        return "error", f"Training failed: {progress.error or last_line}"
    if returncode < 0 or returncode in (137, 139, 3221225477):
        how = f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
        hint = " (SIGKILL: usually the system ran out of memory)" if returncode in (-9, 137) else ""
        step = files.checkpoint_step()
        keep = f" The checkpoint at step {step} is kept: Resume continues from it." if step is not None else ""
        return "crashed", f"The training process died ({how}){hint}. WebUI is unaffected.{keep} Log: {files.console}"
    return "error", f"Training ended with exit code {returncode}: {last_line}. Log: {files.console}"


class TrainController:
    """Start, follow, cancel and resume one job at a time."""

    def __init__(
        self,
        *,
        python: str | None = None,
        pythonpath: list[str] | None = None,
        hooks: Hooks | None = None,
        poll_seconds: float = 0.5,
        available_gpus: int | None = None,
    ) -> None:
        self.python = python or sys.executable
        self.pythonpath = [str(EXTENSIONS_LIB)] if pythonpath is None else list(pythonpath)
        self.hooks = hooks or Hooks()
        self.poll_seconds = poll_seconds
        self.available_gpus = available_gpus
        self._job: Job | None = None
        self._lock = threading.Lock()

    # -------------------------------------------------------------------------------------------- queries

    @property
    def job(self) -> Job | None:
        return self._job

    @property
    def busy(self) -> bool:
        job = self._job
        return job is not None and not job.done.is_set()

    def status(self) -> JobStatus:
        job = self._job
        if job is None:
            return JobStatus("idle")
        return job.status()

    # -------------------------------------------------------------------------------------------- control

    def start(self, request: TrainRequest, *, resume: bool = False, overwrite: bool = False) -> Job:
        """Launch a job in a background thread; JobError when one is already running."""
        argv, extra = build_command(
            request, python=self.python, resume=resume, overwrite=overwrite, available_gpus=self.available_gpus
        )
        with self._lock:
            if self.busy:
                running = self._job.request.out if self._job else "?"
                raise JobError(f"Hyper-SD: a training job ({running}) is already running; cancel it or wait")
            job = Job(request, resume, overwrite)
            self._job = job
        thread = threading.Thread(target=self._run, args=(job, argv, extra), name="hypersd-train", daemon=True)
        thread.start()
        return job

    def adopt(self, work_dir: str | pathlib.Path) -> Job | None:
        """After a host restart: follow a job that is still running (its pid is alive); None if there is none."""
        if self.busy:
            return self._job
        for path in sorted(pathlib.Path(work_dir).glob("*.job.json")):
            data = read_job_file(path)
            if not data or not pid_alive(data.get("pid")):
                continue
            request = TrainRequest.from_dict(data["request"])
            job = Job(request, bool(data.get("resume")), False)
            job.pid = int(data["pid"])
            job.state = "running"
            job.message = "Training (started before WebUI restarted)…"
            with self._lock:
                self._job = job
            threading.Thread(target=self._watch_adopted, args=(job,), name="hypersd-train", daemon=True).start()
            return job
        return None

    def cancel(self) -> str:
        job = self._job
        if job is None or job.done.is_set():
            return "Hyper-SD: no training job is running."
        with job.lock:
            if job.state == "waiting":
                job.cancel_requested = True
                return "Hyper-SD: cancelled before the job started."
            if job.cancel_requested:  # a second Cancel: stop at once, like a second Ctrl-C
                job.kill_requested = True
                self._kill(job)
                return "Hyper-SD: stopped at once; progress since the last checkpoint is lost."
            job.cancel_requested = True
            job.files.stop.touch()
            phase = job.follower.poll().phase
            if phase in ("starting", "caching"):
                job.kill_requested = True
                self._kill(job)
                return "Hyper-SD: stopped before training began; there was nothing to save."
            job.state = "stopping"
            job.message = "Stopping after this step and saving a checkpoint…"
            return "Hyper-SD: stopping after this step and saving a checkpoint (press Cancel again to stop at once)."

    def wait(self, timeout: float | None = None) -> JobStatus:
        job = self._job
        if job is not None:
            job.done.wait(timeout)
        return self.status()

    # -------------------------------------------------------------------------------------------- internals

    def _kill(self, job: Job) -> None:
        if job.pid:
            kill_tree(job.pid)

    def _run(self, job: Job, argv: list[str], extra: dict[str, str]) -> None:
        files = job.files
        before_done = False
        try:
            job.note(self.hooks.before(job))
            before_done = True
            if job.cancel_requested:
                job.result, job.message = "cancelled", "Cancelled before the job started."
                return
            files.work_dir.mkdir(parents=True, exist_ok=True)
            files.stop.unlink(missing_ok=True)
            files.config.write_text(json.dumps(engine_config(job.request), indent=2), encoding="utf-8")
            env = child_environment(extra, self.pythonpath)
            job.launched = time.time()
            with job.lock:
                job.proc = _spawn(argv, env, files.console, files.work_dir)
                job.pid = job.proc.pid
                job.state = "running"
                job.message = LAUNCH_MESSAGES[bool(job.resume)]
            write_job_file(files, job.request, pid=job.pid, resume=job.resume, started=time.time())
            job.returncode = job.proc.wait()  # Cancel works through the stop file or kills the process group
            self._finish(job)
        except Exception as err:  # a hook or the launch failed: say so, never leave the job "running"
            job.result, job.message = "error", f"Hyper-SD: the job could not run: {err}"
        finally:
            if before_done:
                job.state = "finishing"
                try:
                    job.note(self.hooks.after(job))
                except Exception as err:
                    job.note(f"Hyper-SD: after the job: {err}")
            write_job_file(files, job.request, pid=None, result=job.result, returncode=job.returncode)
            files.stop.unlink(missing_ok=True)
            job.state = "finished"
            job.done.set()

    def _finish(self, job: Job) -> None:
        progress = job.follower.poll()
        if job.kill_requested and job.returncode != EXIT_INTERRUPTED:
            step = job.files.checkpoint_step()
            keep = f"; the checkpoint at step {step} is kept (Resume)" if step is not None else ""
            job.result, job.message = "cancelled", f"Stopped{keep}."
            return
        returncode = job.returncode or 0
        fresh = progress.updated is not None and progress.updated >= job.launched - 1.0
        if fresh and returncode not in (EXIT_DONE, EXIT_INTERRUPTED) and progress.phase in ("done", "interrupted"):
            # accelerate launch (torchrun) reports a worker's clean exit 130 as a failure (exit 1): the engine's log
            # of this launch says what really happened
            returncode = EXIT_DONE if progress.phase == "done" else EXIT_INTERRUPTED
        if not fresh:
            progress = dataclasses.replace(progress, error=None)  # an error logged by an earlier run is not this one
        job.result, job.message = describe_exit(returncode, progress, tail(job.files.console), job.files)

    def _watch_adopted(self, job: Job) -> None:
        try:
            while pid_alive(job.pid):
                time.sleep(self.poll_seconds)
            progress = job.follower.poll()
            job.result = {"done": "done", "interrupted": "interrupted", "error": "error"}.get(progress.phase, "crashed")
            job.message = {
                "done": f"Done after {progress.step} steps: {progress.final}",
                "interrupted": f"Stopped at step {progress.step}; press Resume to continue.",
                "error": f"Training failed: {progress.error}",
            }.get(progress.phase, f"The training process ended; see {job.files.console}")
        finally:
            job.files.stop.unlink(missing_ok=True)
            job.state = "finished"
            job.done.set()


# ------------------------------------------------------------------------------------------------ resume


@dataclass
class ResumableRun:
    out: str
    step: int
    total_steps: int | None
    request: TrainRequest

    @property
    def label(self) -> str:
        total = f" of {self.total_steps}" if self.total_steps else ""
        return f"{self.out} (step {self.step}{total})"


def find_resumable(work_dir: str | pathlib.Path) -> list[ResumableRun]:
    """Runs with a checkpoint that did not finish, newest first (also after a WebUI restart)."""
    runs = []
    root = pathlib.Path(work_dir)
    if not root.is_dir():
        return []
    for path in root.glob("*.job.json"):
        data = read_job_file(path)
        if not data or pid_alive(data.get("pid")):
            continue
        request = TrainRequest.from_dict(data["request"])
        files = JobFiles(root, request.out)
        step = files.checkpoint_step()
        if step is None:
            continue
        progress = LogFollower(files.log).poll()
        if progress.phase == "done":
            continue
        runs.append((path.stat().st_mtime, ResumableRun(request.out, step, progress.total_steps or None, request)))
    return [run for _, run in sorted(runs, key=lambda item: -item[0])]
