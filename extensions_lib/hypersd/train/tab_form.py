"""The Train tab's form: every input as one typed value, and the job request it makes.

Host-free (the host is duck-typed: ``checkpoints()``, ``lora_dir()``, ``work_dir()``), so the tab's event functions
and the bad-input battery test it without WebUI; :mod:`hypersd.webui.train_tab` wires it to gradio.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from hypersd.train.controller import TrainRequest
from hypersd.train.form import TRAINING_PRESETS, FormError, settings_from_form, valid_output_name
from hypersd.train.form_check import check_form


@dataclass
class TrainForm:
    """Every input of the tab, in the order the gradio components are passed."""

    checkpoint: str = ""
    data: str = ""
    out: str = "house-hyper"
    preset: str = "Quick test"
    stages: str = ""
    unified: bool = False
    feedback: bool = False
    reward: str = ""
    steps_per_stage: str = ""
    rank: str = ""
    learning_rate: str = ""
    batch_size: str = ""
    cfg_min: str = ""
    cfg_max: str = ""
    resolution: str = ""
    buckets: str = "Auto"
    precision: str = "Auto"
    gradient_checkpointing: bool = False
    sample_prompts: str = ""
    report: str = "Auto"
    report_samples: str = ""
    gpus: str = ""
    free_vram: bool = True
    compare: bool = True
    normal_steps: float = 25
    normal_cfg: float = 7.0
    overwrite: bool = False


FORM_FIELDS = [f.name for f in dataclasses.fields(TrainForm)]


def form_from_values(values: list[Any] | tuple[Any, ...]) -> TrainForm:
    return check_form(TrainForm(**dict(zip(FORM_FIELDS, values, strict=True))))


CHECKSUM = re.compile(r"\s*\[[^]]+]\s*$")  # the " [392472d64b]" WebUI appends to a title once it has the hash


def find_checkpoint(checkpoints: dict[str, str], title: str) -> str | None:
    """The file of the checkpoint ``title`` names in ``checkpoints`` (title -> file). A title with another or no
    short hash counts as the same checkpoint, as in WebUI: WebUI renames "house.safetensors" to
    "house.safetensors [392472d64b]" when it first hashes the file, often after the tab was drawn."""
    if title in checkpoints:
        return checkpoints[title]
    name = CHECKSUM.sub("", title or "")
    files = {path for other, path in checkpoints.items() if CHECKSUM.sub("", other) == name}
    return files.pop() if len(files) == 1 else None


def request_from_form(host: Any, form: TrainForm) -> TrainRequest:
    """FormError/JobError with every problem of the form itself (the files are checked by the preflight)."""
    problems = []
    model = find_checkpoint(host.checkpoints(), form.checkpoint)
    if model is None:
        problems.append(f"Checkpoint: {form.checkpoint!r} is not in WebUI's list; pick one (🔄 refreshes the list)")
    problem = valid_output_name(form.out)
    if problem:
        problems.append(problem)
    if form.preset not in TRAINING_PRESETS:
        problems.append(f"Training preset: choose one of {', '.join(TRAINING_PRESETS)}")
    try:
        settings = settings_from_form(
            stages=form.stages, unified=form.unified, feedback=form.feedback, reward=form.reward,
            steps_per_stage=form.steps_per_stage, rank=form.rank,
            learning_rate=form.learning_rate, batch_size=form.batch_size, cfg_min=form.cfg_min, cfg_max=form.cfg_max,
            resolution=form.resolution, buckets=form.buckets, precision=form.precision,
            gradient_checkpointing=form.gradient_checkpointing, sample_prompts=form.sample_prompts,
            report=form.report, report_samples=form.report_samples,
        )  # fmt: skip
    except FormError as err:
        problems += [line[2:] for line in str(err).splitlines()[1:]]
        settings = {}
    if problems:
        raise FormError("Hyper-SD: fix these settings:\n- " + "\n- ".join(problems))
    return TrainRequest(
        model=str(model),
        data=form.data.strip(),
        out=form.out.strip(),
        output_dir=str(host.lora_dir()),
        work_dir=str(host.work_dir()),
        preset=TRAINING_PRESETS[form.preset],
        settings=settings,
        gpus=str(form.gpus or "").strip(),
        tokenizer=host.tokenizer_dir(),
    )


def compare_options(form: TrainForm) -> dict[str, Any] | None:
    if not form.compare:
        return None
    return {"normal_steps": int(form.normal_steps or 25), "normal_cfg": float(form.normal_cfg or 7.0)}
