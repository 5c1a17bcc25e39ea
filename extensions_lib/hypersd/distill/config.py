"""One dataclass describes a distillation run; presets and config files (JSON or TOML) fill it.

Precedence: dataclass defaults < preset < config file < command-line flags.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from dataclasses import dataclass, field
from typing import Any

BASES = ("sd15", "sdxl")
LOSSES = ("huber", "mse")
MIXED_PRECISION = ("no", "fp16", "bf16")

#: TSCD.md: ω ~ U[5, 15] is LCM practice for SD1.5, [3, 6] for SDXL.
DEFAULT_OMEGA = {"sd15": (5.0, 15.0), "sdxl": (3.0, 6.0)}
DEFAULT_RESOLUTION = {"sd15": 512, "sdxl": 1024}


class ConfigError(ValueError):
    """A bad setting; the message says which one and what to do."""


@dataclass
class DistillConfig:
    model: str = ""
    data: str | None = None  # image folder, kohya N_name/ folder, metadata.jsonl folder, or a prompt list (.txt)
    out: str = "hypersd-distilled"
    output_dir: str = "output"
    work_dir: str | None = None  # where <out>.run/ (log, checkpoints, samples) lives; None: output_dir
    base: str = "auto"  # "auto" detects from the weights; "sd15"/"sdxl" refuses a model of the other kind
    tokenizer: str | None = None  # folder with tokenizer files (single-file models); else the local HF cache

    # TSCD
    stages: tuple[int, ...] = (8, 4, 2, 1)
    steps_per_stage: int = 1000
    solver_steps: int = 40  # N; must be divisible by every k (40 or 48 for k up to 8)
    omega_min: float | None = None  # None: DEFAULT_OMEGA[base]
    omega_max: float | None = None
    ema_decay: float = 0.95
    loss: str = "huber"
    huber_c: float = 0.001
    offset_noise: float = 0.05
    adversarial: bool = False
    stage_weights: dict[int, tuple[float, float]] = field(default_factory=dict)  # k -> (w_mse, w_adv) overrides
    disc_lr: float = 1e-4

    # LoRA / optimiser
    rank: int = 64
    alpha: float | None = None  # None: alpha = rank
    lora_targets: str = "all"  # "attn", "attn_ff" or "all" (attention + feed-forward + resnet/sampler convs)
    learning_rate: float = 1e-4
    warmup_steps: int = 0
    weight_decay: float = 0.0
    batch_size: int = 4
    grad_accum: int = 1
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    use_8bit_adam: bool = False
    seed: int = 0

    # data
    resolution: int | None = None  # None: DEFAULT_RESOLUTION[base]
    buckets: bool | None = None  # None: on for SDXL, off for SD1.5 (centre crops)
    synth_steps: int = 20  # prompt-list mode: teacher DDIM steps used to make the x0 latents once
    synth_per_prompt: int = 1

    # bookkeeping
    checkpoint_every: int = 200
    log_every: int = 1
    sample_prompts: tuple[str, ...] = ()
    sample_seed: int = 1234
    export_ema: bool = False
    recommended_gamma: float = 0.3

    def resolved(self, base: str) -> DistillConfig:
        """A copy with every base-dependent default filled in for ``base``."""
        cfg = dataclasses.replace(self)
        lo, hi = DEFAULT_OMEGA[base]
        cfg.omega_min = lo if cfg.omega_min is None else cfg.omega_min
        cfg.omega_max = hi if cfg.omega_max is None else cfg.omega_max
        cfg.resolution = DEFAULT_RESOLUTION[base] if cfg.resolution is None else cfg.resolution
        cfg.buckets = (base == "sdxl") if cfg.buckets is None else cfg.buckets
        cfg.alpha = float(cfg.rank) if cfg.alpha is None else cfg.alpha
        return cfg

    def validate(self) -> None:
        problems = []
        if not self.model:
            problems.append("--model is required (a .safetensors file or a diffusers folder)")
        if self.base not in ("auto", *BASES):
            problems.append(f"base must be auto, sd15 or sdxl, got {self.base!r}")
        if not self.stages or any(k < 1 or 1000 % k for k in self.stages):
            problems.append(f"stages must be divisors of 1000 such as 8,4,2,1, got {self.stages}")
        if self.solver_steps < 2 or 1000 % self.solver_steps:
            problems.append(f"solver_steps must divide 1000 (e.g. 40), got {self.solver_steps}")
        elif any(self.solver_steps % k for k in self.stages):
            problems.append(f"solver_steps={self.solver_steps} must be divisible by every stage k {self.stages}")
        if self.loss not in LOSSES:
            problems.append(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            problems.append(f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        if self.lora_targets not in ("attn", "attn_ff", "all"):
            problems.append(f"lora_targets must be attn, attn_ff or all, got {self.lora_targets!r}")
        for name in ("steps_per_stage", "rank", "batch_size", "grad_accum", "checkpoint_every", "synth_steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay <= 1.0:
            problems.append(f"ema_decay must be in [0, 1], got {self.ema_decay}")
        if self.omega_min is not None and self.omega_max is not None and self.omega_min > self.omega_max:
            problems.append(f"omega_min {self.omega_min} > omega_max {self.omega_max}")
        if self.resolution is not None and (self.resolution < 64 or self.resolution % 64):
            problems.append(f"resolution must be a multiple of 64 (>= 64), got {self.resolution}")
        if not self.out or any(c in self.out for c in "/\\:") or self.out.startswith("."):
            problems.append(f"--out must be a plain file name without folders, got {self.out!r}")
        if problems:
            raise ConfigError("Hyper-SD: bad distillation settings:\n  " + "\n  ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["stages"] = list(self.stages)
        d["sample_prompts"] = list(self.sample_prompts)
        d["stage_weights"] = {str(k): list(v) for k, v in self.stage_weights.items()}
        return d


#: Presets: how long and how big; everything else stays at the defaults.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"steps_per_stage": 100, "rank": 16, "batch_size": 2, "checkpoint_every": 50},
    "standard": {"steps_per_stage": 1000, "rank": 64, "batch_size": 4, "adversarial": True},
    "high": {"steps_per_stage": 4000, "rank": 64, "batch_size": 8, "adversarial": True, "ema_decay": 0.95},
}

_FIELDS = {f.name: f for f in dataclasses.fields(DistillConfig)}


def _coerce(name: str, value: Any) -> Any:
    if name in ("stages", "sample_prompts"):
        if isinstance(value, str):
            value = [v.strip() for v in value.split("," if name == "stages" else "|") if v.strip()]
        return tuple(int(v) for v in value) if name == "stages" else tuple(str(v) for v in value)
    if name == "stage_weights":
        return {int(k): (float(v[0]), float(v[1])) for k, v in dict(value).items()}
    return value


def apply_overrides(cfg: DistillConfig, values: dict[str, Any], source: str) -> DistillConfig:
    """A copy of cfg with values applied; unknown keys are refused (a typo must not be silently ignored)."""
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"Hyper-SD: unknown setting(s) {unknown} in {source}; known: {sorted(_FIELDS)}")
    return dataclasses.replace(cfg, **{k: _coerce(k, v) for k, v in values.items()})


def load_config_file(path: str | pathlib.Path) -> dict[str, Any]:
    """Read a flat JSON or TOML table of DistillConfig fields (a ``[distill]`` table in TOML also works)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"Hyper-SD: config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            try:
                import tomli as tomllib  # type: ignore[no-redef]
            except ModuleNotFoundError as err:
                raise ConfigError("Hyper-SD: TOML config files need Python 3.11+ or `pip install tomli`") from err
        data = tomllib.loads(text)
    elif path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        raise ConfigError(f"Hyper-SD: config file must end in .json or .toml: {path}")
    if "distill" in data and isinstance(data["distill"], dict):
        data = data["distill"]
    if not isinstance(data, dict):
        raise ConfigError(f"Hyper-SD: config file {path} must hold a table of settings")
    return data


def build_config(preset: str | None = None, config_file: str | None = None, **overrides: Any) -> DistillConfig:
    cfg = DistillConfig()
    if preset:
        if preset not in PRESETS:
            raise ConfigError(f"Hyper-SD: unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        cfg = apply_overrides(cfg, PRESETS[preset], f"preset {preset}")
    if config_file:
        cfg = apply_overrides(cfg, load_config_file(config_file), str(config_file))
    cfg = apply_overrides(cfg, {k: v for k, v in overrides.items() if v is not None}, "the command line")
    cfg.validate()
    return cfg
