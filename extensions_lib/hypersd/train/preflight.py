"""Refuse bad input before a training job starts: model, data, output, GPUs, disk, the engine's packages.

Everything here is cheap (a safetensors header, a folder scan, one short subprocess for the engine's imports) and
runs in the host process; nothing loads model weights.
"""

from __future__ import annotations

import json
import pathlib
import struct
import subprocess
from dataclasses import dataclass, field
from typing import Any

from hypersd.train import layout
from hypersd.train.estimate import check_disk, disk_needed
from hypersd.train.form import valid_output_name
from hypersd.train.job_launch import JobError, JobFiles, TrainRequest, child_environment, parse_gpus
from hypersd.train.preview import DatasetReport, dataset_report

#: What ``python -m hypersd distill`` imports; checked in a subprocess with the same interpreter and path.
ENGINE_IMPORTS = (
    "import diffusers, peft, accelerate, transformers; "
    "from diffusers import UNet2DConditionModel, AutoencoderKL; from peft import LoraConfig; "
    "from accelerate import Accelerator; import hypersd.distill.engine"
)
ENGINE_PACKAGES_HINT = (
    "Restart WebUI once so that the extension's install.py installs them, or install them into WebUI's venv by "
    'hand: pip install "diffusers>=0.31,<0.37" "peft>=0.13,<0.14" (versions that work with WebUI 1.10\'s '
    "transformers 4.30 and accelerate 0.21)"
)


@dataclass
class Preflight:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    base: str | None = None
    disk_needed: int | None = None
    report: DatasetReport | None = None
    passed: list[str] = field(default_factory=list)  # the costly checks that ran and passed (a reward model loads)

    @property
    def ok(self) -> bool:
        return not self.errors

    def markdown(self) -> str:
        lines = []
        if self.errors:
            lines.append("**Cannot start:**")
            lines += [f"- ❌ {e}" for e in self.errors]
        if self.warnings:
            lines.append("**Warnings:**")
            lines += [f"- ⚠️ {w}" for w in self.warnings]
        if self.disk_needed:
            lines.append(f"Disk needed for the LoRAs and checkpoints: about {self.disk_needed / 2**20:,.0f} MiB.")
        lines += [f"- ✔️ {p}" for p in self.passed]
        if self.ok:
            lines.append("✅ Ready to train.")
        return "\n".join(lines)


def safetensors_keys(path: pathlib.Path) -> list[str]:
    """Tensor names from a .safetensors header (no tensor is read)."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) != 8:
            raise ValueError("file too short")
        (size,) = struct.unpack("<Q", head)
        if size > 100 * 2**20:
            raise ValueError("header too large")
        header = json.loads(handle.read(size))
    return [k for k in header if k != "__metadata__"]


def model_base(model: str) -> str:
    """ "sd15" or "sdxl" for a checkpoint file or a diffusers folder; ValueError with what to do otherwise."""
    from hypersd.distill.models import ModelError, detect_base_from_keys, detect_base_of_diffusers_folder

    path = pathlib.Path(model)
    try:
        if path.is_dir():
            return detect_base_of_diffusers_folder(path)
        if not path.is_file():
            raise ValueError(f"Hyper-SD: the model {path} does not exist")
        if path.suffix.lower() != ".safetensors":
            raise ValueError(
                f"Hyper-SD: {path.name} is a pickled checkpoint ({path.suffix}); training reads .safetensors only "
                "(they cannot run code when loaded). Convert it, e.g. in WebUI's Checkpoint Merger with "
                "'Primary model' only, multiplier 0 and format safetensors."
            )
        try:
            keys = safetensors_keys(path)
        except (OSError, ValueError) as err:
            raise ValueError(f"Hyper-SD: cannot read {path.name} as safetensors: {err}") from err
        return detect_base_from_keys(keys, path.name)
    except ModelError as err:
        raise ValueError(str(err)) from err


_engine_ok: dict[tuple[str, tuple[str, ...]], str | None] = {}


def engine_problem(python: str, pythonpath: list[str], timeout: float = 120.0) -> str | None:
    """None when the engine's packages import in a fresh ``python``; else the error and how to fix it (cached)."""
    key = (python, tuple(pythonpath))
    if _engine_ok.get(key, "missing") is None:
        return None
    try:
        result = subprocess.run(
            [python, "-c", ENGINE_IMPORTS],
            env=child_environment({}, pythonpath),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"Hyper-SD: could not check the training packages ({err})"
    if result.returncode == 0:
        _engine_ok[key] = None
        return None
    last = next((line for line in reversed(result.stderr.splitlines()) if line.strip()), "unknown error")
    problem = f"Hyper-SD: the training packages do not import: {last}. {ENGINE_PACKAGES_HINT}"
    _engine_ok[key] = problem
    return problem


REWARD_CHECK = (
    "import sys\n"
    "from hypersd.distill.rewards import RewardError, check_reward\n"
    "try:\n"
    "    check_reward(sys.argv[1])\n"
    "except RewardError as err:\n"
    "    print(err, file=sys.stderr); sys.exit(3)\n"
)


def reward_problem(python: str, pythonpath: list[str], spec: str, timeout: float = 600.0) -> str | None:
    """None when the reward model ``spec`` loads and scores an image in a fresh ``python`` (the training process's
    environment, so WebUI's own process never imports it); else the message that says what to do."""
    try:
        result = subprocess.run(
            [python, "-c", REWARD_CHECK, spec], env=child_environment({}, pythonpath), capture_output=True,
            text=True, timeout=timeout, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"Hyper-SD: could not check the reward model {spec!r} ({err})"
    if result.returncode == 0:
        return None
    last = next((line for line in reversed(result.stderr.splitlines()) if line.strip()), "unknown error")
    return last if last.startswith("Hyper-SD:") else f"Hyper-SD: the reward model {spec!r} does not load: {last}"


def _settings_checks(request: TrainRequest, result: Preflight, available_gpus: int | None) -> Any:
    """The output name, the model's base, the settings and the GPUs; the engine's config (None when it fails)."""
    from hypersd.distill.config import ConfigError, build_config

    problem = valid_output_name(request.out)
    if problem:
        result.errors.append(problem)
    try:
        result.base = model_base(request.model)
    except ValueError as err:
        result.errors.append(str(err))
    cfg = None
    try:
        cfg = build_config(
            request.preset or None, None, **{**request.settings, "model": request.model or "?", "out": request.out}
        )
    except ConfigError as err:
        result.errors.append(str(err))
    try:
        parse_gpus(request.gpus, available_gpus)
    except JobError as err:
        result.errors.append(str(err))
    if cfg is not None and cfg.base != "auto" and result.base and cfg.base != result.base:
        result.errors.append(f"Hyper-SD: the model is {result.base} but the settings ask for {cfg.base}")
    return cfg


def _data_checks(request: TrainRequest, result: Preflight, cfg: Any) -> None:
    from hypersd.distill.config import DEFAULT_RESOLUTION

    resolution = None
    if cfg is not None:
        resolution = cfg.resolution or (DEFAULT_RESOLUTION.get(result.base) if result.base else None)
    if not (request.data or "").strip():
        result.errors.append("Hyper-SD: choose the training data (an image folder with captions or a prompt list)")
        return
    report = dataset_report(request.data, base=result.base, resolution=resolution)
    result.report = report
    result.errors += report.errors
    result.warnings += report.warnings


def _output_checks(request: TrainRequest, result: Preflight, cfg: Any, resume: bool, overwrite: bool) -> None:
    """An earlier run of the same name (resume or overwrite it) and the disk space the run's files need."""
    named = valid_output_name(request.out) is None
    files = JobFiles(pathlib.Path(request.work_dir), request.out)
    final = layout.final_lora(pathlib.Path(request.output_dir), request.out)
    checkpoint = files.checkpoint_step() if named else None  # a bad name is never looked up
    if resume and checkpoint is None:
        result.errors.append(f"Hyper-SD: there is no checkpoint of {request.out!r} to resume in {files.run_dir}")
    if not resume and not overwrite and named and (checkpoint is not None or final.exists()):
        what = final if final.exists() else files.run_dir
        result.errors.append(
            f"Hyper-SD: {what} already exists: resume that run, tick 'Overwrite', or choose another output name"
        )
    if cfg is not None and result.base:
        gan = cfg.adversarial or ("dmd" in cfg.stages and cfg.dmd_adversarial_weight > 0)
        need = disk_needed(result.base, cfg.rank, cfg.lora_targets, len(cfg.stages), gan, "dmd" in cfg.stages)
        result.disk_needed = need
        for folder in {pathlib.Path(request.output_dir), pathlib.Path(request.work_dir)}:
            message = check_disk(folder, need)
            if message:
                result.errors.append(message)


def run_preflight(
    request: TrainRequest,
    *,
    resume: bool = False,
    overwrite: bool = False,
    available_gpus: int | None = None,
    engine_check: Any = None,
    reward_check: Any = None,
) -> Preflight:
    """Every problem at once (not only the first), so that one round of fixes is enough."""
    result = Preflight()
    cfg = _settings_checks(request, result, available_gpus)
    _data_checks(request, result, cfg)
    _output_checks(request, result, cfg, resume, overwrite)
    if engine_check is not None and not result.errors:
        message = engine_check()
        if message:
            result.errors.append(message)
    if reward_check is not None and not result.errors and cfg is not None and cfg.reward:
        message = reward_check(cfg.reward)  # loads the model: only once everything cheaper has passed
        if message:
            result.errors.append(message)
        else:
            result.passed.append(f"The reward model {cfg.reward} loads and scores an image.")
    return result
