"""The files of a distillation run, named in one place for the engine (hypersd.distill) and the Train tab's job
controller, which reads them from WebUI's process without importing the engine.

    <output_dir>/<name>.safetensors                                  the final LoRA (the last stage's weights)
    <output_dir>/<name>-<k>step.safetensors                          each TSCD stage's LoRA (best at k steps)
    <output_dir>/<name>-unified.safetensors, <name>-feedback...      the score-distillation and feedback stages'
    <work_dir>/<name>.run/log.jsonl                                  the JSON-lines log
    <work_dir>/<name>.run/samples/stage-k<k>.png, stage-dmd.png      per-stage sample grids
    <work_dir>/<name>.run/report.html, report.json                   the quality report
    <work_dir>/<name>.run/checkpoints/step-000120/state.pt, rng-*.pt a checkpoint
    <work_dir>/<name>.run/checkpoints/latest                         the name of the last complete one
"""

from __future__ import annotations

import pathlib

CHECKPOINTS = "checkpoints"
LATEST = "latest"
STATE = "state.pt"
_STEP_PREFIX = "step-"


def run_dir(parent: pathlib.Path, name: str) -> pathlib.Path:
    return parent / f"{name}.run"


def final_lora(output_dir: pathlib.Path, name: str) -> pathlib.Path:
    return output_dir / f"{name}.safetensors"


#: the file-name suffix of the named stages' LoRAs (hypersd.distill.config.NAMED_STAGES)
NAMED_STAGE_SUFFIX = {"dmd": "unified", "feedback": "feedback"}


def stage_suffix(stage: int | str) -> str:
    """``8step`` for a TSCD stage with 8 segments, ``unified`` for score distillation, ``feedback`` ..."""
    stage = str(stage)
    return f"{stage}step" if stage.isdigit() else NAMED_STAGE_SUFFIX.get(stage, stage)


def stage_lora(output_dir: pathlib.Path, name: str, k: int | str) -> pathlib.Path:
    return output_dir / f"{name}-{stage_suffix(k)}.safetensors"


def is_stage_lora_name(stem: str) -> bool:
    """True for the name (without extension) :func:`stage_lora` gives a stage's LoRA: ``house-8step``,
    ``house-unified``, ``house-feedback``; the run's final LoRA (``house``) is not one."""
    name, dash, suffix = stem.rpartition("-")
    if not (name and dash):
        return False
    number = suffix.removesuffix("step")
    return (number.isdigit() and stage_suffix(int(number)) == suffix) or suffix in NAMED_STAGE_SUFFIX.values()


def report_html(run: pathlib.Path) -> pathlib.Path:
    return run / "report.html"


def report_json(run: pathlib.Path) -> pathlib.Path:
    return run / "report.json"


def log_file(run: pathlib.Path) -> pathlib.Path:
    return run / "log.jsonl"


def samples_dir(run: pathlib.Path) -> pathlib.Path:
    return run / "samples"


def sample_grid(run: pathlib.Path, k: int | str) -> pathlib.Path:
    return samples_dir(run) / (f"stage-k{k}.png" if str(k).isdigit() else f"stage-{k}.png")


def checkpoint_folder(run: pathlib.Path, step: int) -> pathlib.Path:
    return run / CHECKPOINTS / f"{_STEP_PREFIX}{step:06d}"


def is_checkpoint_folder(path: pathlib.Path) -> bool:
    return path.is_dir() and path.name.startswith(_STEP_PREFIX)


def latest_pointer(run: pathlib.Path) -> pathlib.Path:
    return run / CHECKPOINTS / LATEST


def latest_folder(run: pathlib.Path) -> pathlib.Path | None:
    """The checkpoint folder ``latest`` names (complete or not), or None when there is no pointer."""
    try:
        name = latest_pointer(run).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return run / CHECKPOINTS / name


def checkpoint_step(folder: pathlib.Path) -> int | None:
    """The global step in a checkpoint folder's name, or None for another name."""
    if not folder.name.startswith(_STEP_PREFIX):
        return None
    try:
        return int(folder.name[len(_STEP_PREFIX) :])
    except ValueError:
        return None
