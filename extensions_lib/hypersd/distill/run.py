"""What one run of the engine holds besides the trainer state (paths, log, stages) and its outcomes."""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from hypersd.train import layout

from .config import DMD, FEEDBACK, DistillConfig, is_tscd_stage
from .progress_bar import phase_line
from .stage_tscd import TSCDStage
from .trainer import Stage, TrainerState


class TrainingError(RuntimeError):
    """Training stopped; the message names the cause and what to do."""


class Interrupted(RuntimeError):
    """Stopped on request (Ctrl-C); a checkpoint was saved."""


@dataclass
class RunPaths:
    output_dir: pathlib.Path
    name: str
    work_dir: pathlib.Path | None = None  # the run folder's parent; None: output_dir

    @property
    def run_dir(self) -> pathlib.Path:
        return layout.run_dir(self.work_dir or self.output_dir, self.name)

    @property
    def final_lora(self) -> pathlib.Path:
        return layout.final_lora(self.output_dir, self.name)

    def stage_lora(self, stage: int | str) -> pathlib.Path:
        return layout.stage_lora(self.output_dir, self.name, stage)

    @property
    def log(self) -> pathlib.Path:
        return layout.log_file(self.run_dir)

    def sample_grid(self, stage: int | str) -> pathlib.Path:
        return layout.sample_grid(self.run_dir, stage)


@dataclass
class RunResult:
    final_lora: pathlib.Path | None
    stage_loras: dict[int | str, pathlib.Path]
    steps: int
    losses: list[float]
    interrupted: bool = False
    report: dict[str, Any] | None = None
    records: list[dict[str, Any]] = field(default_factory=list)  # the step records of this session


def _is_oom(err: BaseException) -> bool:
    oom_type = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom_type is not None and isinstance(err, oom_type)) or "out of memory" in str(err).lower()


def build_stages(cfg: DistillConfig) -> list[Stage]:
    """One stage object per name in ``cfg.stages`` (the DMD and feedback stages import what they need lazily)."""
    stages: list[Stage] = []
    for name in cfg.stages:
        if is_tscd_stage(name):
            stages.append(TSCDStage(int(name), cfg))
        elif name == DMD:
            from .stage_dmd import DMDStage

            stages.append(DMDStage(cfg))
        elif name == FEEDBACK:
            from .stage_feedback import FeedbackStage

            regulariser = next((s for s in stages if s.name == DMD), None)
            stages.append(FeedbackStage(cfg, regulariser))
    return stages


class _Run:
    """What one call of run_distillation holds besides the trainer state: paths, log, stages, the bar."""

    def __init__(self, cfg: DistillConfig, accelerator: Any):
        self.cfg = cfg
        self.accelerator = accelerator
        self.main = accelerator.is_main_process
        self.paths = RunPaths(
            pathlib.Path(cfg.output_dir), cfg.out, pathlib.Path(cfg.work_dir) if cfg.work_dir else None
        )
        self.stages: list[Stage] = []
        self.state: TrainerState | None = None
        self.base = ""
        self.echo: Callable[[str], None] | None = None  # the console's line for caching, set-up and the report

    def log(self, record: dict[str, Any]) -> None:
        if self.main:
            self.paths.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self.paths.log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")
            line = phase_line(record) if self.echo is not None else None
            if line:
                self.echo(line)

    def config_record(self) -> dict[str, Any]:
        return {**self.cfg.to_dict(), "base_detected": self.base}
