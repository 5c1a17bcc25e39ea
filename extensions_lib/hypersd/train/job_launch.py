"""A training job's request, its files and its process: the parts of the Train tab's job controller that know
nothing of job state (:mod:`hypersd.train.controller` holds that).

The job runs ``python -m hypersd distill`` (or ``accelerate launch`` with several GPUs) in its own process group, its
console appended to a file; :func:`kill_tree` stops the whole group.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from hypersd.train import layout

EXTENSIONS_LIB = pathlib.Path(__file__).resolve().parents[2]  # the folder that holds the hypersd package

EXIT_DONE, EXIT_ERROR, EXIT_BAD_ARGS, EXIT_INTERRUPTED = 0, 1, 2, 130

#: The job's message from its launch until the log shows training (then "Training…")
LAUNCH_MESSAGES = ("Starting the training process…", "Resuming…")

#: Settings the engine takes from the request itself, not from ``settings``.
_REQUEST_FIELDS = ("model", "data", "out", "output_dir", "work_dir", "tokenizer")


class JobError(RuntimeError):
    """A job cannot start or be controlled; the message says why and what to do."""


@dataclass
class TrainRequest:
    model: str
    data: str
    out: str
    output_dir: str  # where the LoRAs go (WebUI's Lora folder)
    work_dir: str  # where the run folder, logs and checkpoints go
    preset: str = "quick"
    settings: dict[str, Any] = field(default_factory=dict)  # DistillConfig fields over the preset
    gpus: str = ""  # "" / "1": one process; "2": two processes; "0,1": these CUDA devices
    tokenizer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainRequest:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class JobFiles:
    work_dir: pathlib.Path
    out: str

    @property
    def run_dir(self) -> pathlib.Path:
        return layout.run_dir(self.work_dir, self.out)

    @property
    def log(self) -> pathlib.Path:
        return layout.log_file(self.run_dir)

    @property
    def job(self) -> pathlib.Path:
        return self.work_dir / f"{self.out}.job.json"

    @property
    def config(self) -> pathlib.Path:
        return self.work_dir / f"{self.out}.config.json"

    @property
    def console(self) -> pathlib.Path:
        return self.work_dir / f"{self.out}.console.log"

    @property
    def stop(self) -> pathlib.Path:
        return self.work_dir / f"{self.out}.stop"

    @property
    def report(self) -> pathlib.Path:
        return layout.report_html(self.run_dir)

    def sample_grids(self) -> list[pathlib.Path]:
        """Per-stage sample grids, in the order the stages finished."""
        folder = layout.samples_dir(self.run_dir)
        if not folder.is_dir():
            return []
        return sorted(folder.glob("stage-*.png"), key=lambda p: p.stat().st_mtime)

    def checkpoint_step(self) -> int | None:
        """Global step of the last complete checkpoint, or None."""
        folder = layout.latest_folder(self.run_dir)
        if folder is None or not (folder / layout.STATE).is_file():
            return None
        return layout.checkpoint_step(folder)


# ------------------------------------------------------------------------------------------------ the command


def parse_gpus(text: str | int | None, available: int | None = None) -> tuple[int, str | None]:
    """(number of processes, CUDA_VISIBLE_DEVICES or None) from the GPUs field: "", "2" or "0,1"."""
    text = str(text if text is not None else "").strip()
    if text in ("", "0", "1"):
        return 1, None
    if "," in text:
        try:
            ids = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise JobError(f"Hyper-SD: GPUs must be a count (2) or device numbers (0,1), got {text!r}") from None
        if len(set(ids)) != len(ids) or min(ids) < 0:
            raise JobError(f"Hyper-SD: GPUs lists a device twice or a negative number: {text!r}")
        if available is not None and max(ids) >= available:
            raise JobError(
                f"Hyper-SD: GPUs asks for device {max(ids)}, but this machine has {available} "
                f"GPU{'s' if available != 1 else ''} (0..{max(available - 1, 0)})"
            )
        return len(ids), ",".join(str(i) for i in ids)
    try:
        count = int(text)
    except ValueError:
        raise JobError(f"Hyper-SD: GPUs must be a count (2) or device numbers (0,1), got {text!r}") from None
    if count < 1:
        raise JobError(f"Hyper-SD: GPUs must be at least 1, got {count}")
    if available is not None and count > available:
        raise JobError(f"Hyper-SD: {count} GPUs asked for, but this machine has {available}; lower the GPUs field")
    return count, None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def engine_config(request: TrainRequest) -> dict[str, Any]:
    """The ``--config`` table: the request's settings plus where things are."""
    config = {k: v for k, v in request.settings.items() if k not in _REQUEST_FIELDS and v is not None}
    for name in _REQUEST_FIELDS:
        value = getattr(request, name)
        if value:
            config[name] = str(value)
    return config


def build_command(
    request: TrainRequest,
    *,
    python: str,
    resume: bool = False,
    overwrite: bool = False,
    port: int | None = None,
    available_gpus: int | None = None,
) -> tuple[list[str], dict[str, str]]:
    """argv and the environment additions for one launch of the engine (``accelerate launch`` for several GPUs)."""
    if resume and overwrite:
        raise JobError("Hyper-SD: resume and overwrite exclude each other")
    files = JobFiles(pathlib.Path(request.work_dir), request.out)
    processes, visible = parse_gpus(request.gpus, available_gpus)
    engine = ["-m", "hypersd", "distill", "--config", str(files.config), "--stop-file", str(files.stop)]
    engine += ["--no-progress"]
    if request.preset:
        engine += ["--preset", request.preset]
    if resume:
        engine.append("--resume")
    if overwrite:
        engine.append("--overwrite")
    env = {"PYTHONUNBUFFERED": "1"}
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    if processes == 1:
        return [python, *engine], env
    launch = [python, "-m", "accelerate.commands.launch", "--num_processes", str(processes), "--multi_gpu"]
    # explicit launcher settings: no `accelerate config` file is needed; the engine sets its own precision
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--main_process_port", str(port or free_port())]
    return [*launch, *engine], env


def child_environment(extra: dict[str, str], pythonpath: list[str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    parts = [str(p) for p in pythonpath] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):  # never inherit a launcher's
        env.pop(name, None)
    return env


# ------------------------------------------------------------------------------------------------ processes


def _spawn(argv: list[str], env: dict[str, str], console: pathlib.Path, cwd: pathlib.Path) -> subprocess.Popen:
    handle = open(console, "a", encoding="utf-8")  # noqa: SIM115 - the child keeps writing after we return
    handle.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {subprocess.list2cmdline(argv)}\n")
    handle.flush()
    kwargs: dict[str, Any] = {"stdout": handle, "stderr": subprocess.STDOUT, "stdin": subprocess.DEVNULL}
    if os.name == "nt":
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
    else:
        kwargs["start_new_session"] = True  # its own process group: killed as a whole, never by WebUI's Ctrl-C
    try:
        return subprocess.Popen(argv, env=env, cwd=str(cwd), **kwargs)
    finally:
        handle.close()


def kill_tree(pid: int) -> None:
    """Kill the job's process and everything it started (accelerate's workers)."""
    if os.name == "nt":
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(pid)], capture_output=True, check=False)
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def pid_alive(pid: int | None) -> bool:
    """True while ``pid`` runs and is one of our engines (a reused pid of another program does not count)."""
    if not pid:
        return False
    try:
        import psutil  # WebUI has it

        if not psutil.pid_exists(pid):
            return False
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and "hypersd" in " ".join(proc.cmdline())
    except ImportError:
        pass
    except Exception:  # psutil.NoSuchProcess / AccessDenied
        return False
    if os.name == "nt":
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    cmdline = pathlib.Path(f"/proc/{pid}/cmdline")
    return not cmdline.exists() or b"hypersd" in cmdline.read_bytes()


def tail(path: pathlib.Path, lines: int = 40, max_bytes: int = 64 * 1024) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# ------------------------------------------------------------------------------------------------ jobs
