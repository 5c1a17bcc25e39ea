"""One dataclass describes a distillation run; presets and config files (JSON or TOML) fill it.

Precedence: dataclass defaults < preset < config file < command-line flags.
"""

from __future__ import annotations

import dataclasses
import pathlib
from dataclasses import dataclass, field
from typing import Any

from hypersd.distill.config_file import ConfigError, load_config_file

BASES = ("sd15", "sdxl")
LOSSES = ("huber", "mse")
MIXED_PRECISION = ("no", "fp16", "bf16")
LR_SCHEDULES = ("constant", "cosine")
REPORT_LEVELS = ("off", "quick", "full")

#: Stage names: a number k is a TSCD stage with k segments; these two are the later parts of Hyper-SD.
DMD = "dmd"  # score distillation (DMD-style) -> the unified 1-8-step LoRA
FEEDBACK = "feedback"  # human-feedback learning (ReFL-style) on a reward model
NAMED_STAGES = (DMD, FEEDBACK)

#: TSCD.md: ω ~ U[5, 15] is LCM practice for SD1.5, [3, 6] for SDXL.
DEFAULT_OMEGA = {"sd15": (5.0, 15.0), "sdxl": (3.0, 6.0)}
DEFAULT_RESOLUTION = {"sd15": 512, "sdxl": 1024}
#: DMD2 (Yin et al. 2024, arXiv 2405.14867, Appendix "Implementation details"): the real score's guidance scale
#: 1.75 for SD1.5 and 8 for SDXL.
DEFAULT_DMD_GUIDANCE = {"sd15": 1.75, "sdxl": 8.0}


def is_tscd_stage(name: str) -> bool:
    return name.isdigit()


def parse_stages(value: Any) -> tuple[str, ...]:
    """``"8,4,2,1,dmd,feedback"`` (or a list of numbers and names) as stage names: ``("8", ..., "dmd", "feedback")``."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(p).strip().lower() for p in parts if str(p).strip())


def stage_problems(stages: tuple[str, ...]) -> list[str]:
    """What is wrong with a stage list (empty when it is usable)."""
    if not stages:
        return ["stages: give at least one stage, e.g. 8,4,2,1 or 8,4,2,1,dmd,feedback"]
    problems = []
    unknown = [s for s in stages if not is_tscd_stage(s) and s not in NAMED_STAGES]
    if unknown:
        problems.append(
            f"stages: unknown stage(s) {unknown}; use segment counts (8,4,2,1) and {', '.join(NAMED_STAGES)}"
        )
    ks = [int(s) for s in stages if is_tscd_stage(s)]
    if any(k < 1 or 1000 % k for k in ks):
        problems.append(f"stages: segment counts must divide 1000 (8, 4, 2, 1), got {ks}")
    if len(set(stages)) != len(stages):
        problems.append(f"stages: each stage once, got {list(stages)}")
    if ks != sorted(ks, reverse=True):
        problems.append(f"stages: TSCD stages go from many to few segments (8,4,2,1), got {ks}")
    order = [s if s in NAMED_STAGES else "k" for s in stages]
    if DMD in order and "k" in order[order.index(DMD) :]:
        problems.append("stages: dmd starts from the TSCD student, so it comes after the TSCD stages")
    if FEEDBACK in order and order[-1] != FEEDBACK:
        problems.append("stages: feedback is the last stage")
    return problems


@dataclass
class DistillConfig:
    model: str = ""
    data: str | None = None  # image folder, kohya N_name/ folder, metadata.jsonl folder, or a prompt list (.txt)
    out: str = "hypersd-distilled"
    output_dir: str = "output"
    work_dir: str | None = None  # where <out>.run/ (log, checkpoints, samples) lives; None: output_dir
    base: str = "auto"  # "auto" detects from the weights; "sd15"/"sdxl" refuses a model of the other kind
    tokenizer: str | None = None  # folder with tokenizer files (single-file models); else the local HF cache

    # stages: TSCD segment counts, then optionally "dmd" and "feedback" (see NAMED_STAGES)
    stages: tuple[str, ...] = ("8", "4", "2", "1")
    steps_per_stage: int = 1000
    stage_steps: dict[str, int] = field(default_factory=dict)  # per-stage overrides, e.g. {"dmd": 2000}

    # TSCD
    solver_steps: int = 40  # N; must be divisible by every k (40 or 48 for k up to 8)
    # timesteps = grid points - 1 (999, 974, ..., 24, clean): the segment edges are then exactly the timesteps that
    # trailing inference queries (999, 874, ...); off: multiples of T/N (975 at the top), one cell from inference's 999
    trailing_grid: bool = False  # measured on the demo: no lower error than the multiples (README "Demo")
    omega_min: float | None = None  # None: DEFAULT_OMEGA[base]
    omega_max: float | None = None
    ema_decay: float = 0.95
    loss: str = "huber"
    huber_c: float = 0.001
    offset_noise: float = 0.05
    adversarial: bool = False
    stage_weights: dict[int, tuple[float, float]] = field(default_factory=dict)  # k -> (w_mse, w_adv) overrides
    disc_lr: float = 1e-4

    # score distillation (stage "dmd"), defaults from DMD2 (arXiv 2405.14867) unless noted
    dmd_guidance: float | None = None  # the real score's CFG; None: DEFAULT_DMD_GUIDANCE[base]
    dmd_fake_updates: int = 5  # DMD2's two time-scale rule: 5 fake-score updates per student update
    dmd_fake_lr: float | None = None  # None: learning_rate (DMD2 uses the same rate for both)
    # fake-only updates before the first student update of each stage that trains with the fake score (dmd, and
    # feedback with dmd as its regulariser): at dmd's start the fake score is the unguided teacher, far from a
    # student that TSCD trained with CFG baked in; at feedback's start it lags the student by the two time scales
    # (our addition; DMD2 starts from the teacher and has none)
    dmd_fake_warmup: int = 0
    dmd_t_min: int = 20  # DMD2: noise levels for the score difference drawn from [0.02 T, 0.98 T]
    dmd_t_max: int = 980
    dmd_regression_weight: float = 0.25  # DMD (arXiv 2311.18828): lambda_reg = 0.25 on paired teacher outputs
    dmd_regression_pairs: int = 64  # noises whose teacher result is computed once at the stage's start
    dmd_regression_steps: int = 25  # teacher DDIM steps (with dmd_guidance) for those pairs
    # our addition: beside the 1-step pairs, a second batch of pairs at a later point of the unified_steps grids
    # (the pair's teacher result noised to that timestep with the pair's own noise: what a perfect first step hands
    # the next), so the few-step refinements stay on the teacher's images too
    dmd_regression_multistep: bool = True  # measured on the demo (README "Demo"): lower Fréchet distance at 2-8 steps
    # our addition, measured on the demo (README "Demo"): the unified LoRA (dmd, and feedback after it) is written as
    # the EMA of its weights (ema_decay), which evens out score distillation's noisy steps: Fréchet distance at
    # 2/4/8 steps 0.757/0.659/0.972 -> 0.663/0.607/0.817, 1-step fidelity 95 % -> 98 %; TSCD LoRAs stay as trained
    unified_export_ema: bool = True
    dmd_adversarial_weight: float = 0.0  # DMD2's optional GAN term (on frozen-teacher features here); 0 = off
    unified_steps: tuple[int, ...] = (1, 2, 4, 8)  # backward simulation: the student's inputs come from its own
    # n-step TCD trajectories (gamma 1, DMD2's re-noising), n drawn from these, so one LoRA serves every count

    # human feedback (stage "feedback"), ReFL (ImageReward, arXiv 2304.05977) unless noted
    reward: str = ""  # KIND:PATH, KIND one of hypersd.distill.rewards.KINDS (clip, pickscore, aesthetic, ...)
    feedback_alpha: float | None = None  # hinge threshold; None: the reward kind's default (ImageReward: 2)
    feedback_weight: float = 1e-3  # ReFL's grad scale lambda = 1e-3
    feedback_steps: tuple[int, ...] = (1, 2, 4, 8)  # the student runs its n-step trajectory (n drawn from these) and
    # the reward sees the x0 of its last step, a late timestep for n >= 2 (499, 249, 124), as ReFL scores the x0
    # predicted from a late step; for a few-step student that last step is the image a user gets
    feedback_decode_size: int | None = None  # decode at this pixel size (a smaller, cheaper decode); None: full
    feedback_regularizer_weight: float = 1.0  # the distillation loss (of the stage before) as a regulariser

    # LoRA / optimiser
    rank: int = 64
    alpha: float | None = None  # None: alpha = rank
    lora_targets: str = "all"  # "attn", "attn_ff" or "all" (attention + feed-forward + resnet/sampler convs)
    learning_rate: float = 1e-4
    warmup_steps: int = 0
    # "cosine": each stage's learning rate falls from lr to lr_end_ratio*lr (Adam at a constant lr keeps the LoRA
    # jittering around its optimum: an error floor the student cannot go below); "constant": no decay
    lr_schedule: str = "constant"
    lr_end_ratio: float = 0.1
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
    export_ema: bool = False  # every stage's LoRA as its weights' EMA (the unified one: unified_export_ema)
    recommended_gamma: float = 0.3  # written into the LoRAs when the quality report is off

    # quality report after the run (hypersd.distill.report)
    report: str = "quick"  # off | quick | full (full: every sampler, gamma and CFG of the grid)
    report_noises: int = 16  # noises per setting when choosing each LoRA's best sampler/gamma/CFG
    report_samples: int = 64  # images per LoRA and step count at its best setting: error, fidelity, Fréchet distance
    report_steps: tuple[int, ...] = (1, 2, 4, 8)  # the step counts each LoRA is measured at
    report_teacher_cfg: float | None = None  # the teacher's CFG in the references; None: the middle of omega's range
    report_prompts: tuple[str, ...] = ()  # default: the sample prompts, else the first captions
    report_scorer: str = ""  # KIND:PATH of a prompt-fidelity scorer (a rewards kind); "" = none

    def __post_init__(self) -> None:
        # stage names are strings ("8", "dmd"); a config built in code may give the TSCD stages as numbers
        self.stages = parse_stages(self.stages)

    def resolved(self, base: str) -> DistillConfig:
        """A copy with every base-dependent default filled in for ``base``."""
        cfg = dataclasses.replace(self)
        lo, hi = DEFAULT_OMEGA[base]
        cfg.omega_min = lo if cfg.omega_min is None else cfg.omega_min
        cfg.omega_max = hi if cfg.omega_max is None else cfg.omega_max
        cfg.resolution = DEFAULT_RESOLUTION[base] if cfg.resolution is None else cfg.resolution
        cfg.buckets = (base == "sdxl") if cfg.buckets is None else cfg.buckets
        cfg.alpha = float(cfg.rank) if cfg.alpha is None else cfg.alpha
        cfg.dmd_guidance = DEFAULT_DMD_GUIDANCE[base] if cfg.dmd_guidance is None else cfg.dmd_guidance
        cfg.dmd_fake_lr = cfg.learning_rate if cfg.dmd_fake_lr is None else cfg.dmd_fake_lr
        return cfg

    def steps_of(self, stage: str) -> int:
        return int(self.stage_steps.get(stage, self.steps_per_stage))

    @property
    def total_steps(self) -> int:
        return sum(self.steps_of(s) for s in self.stages)

    @property
    def tscd_ks(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.stages if is_tscd_stage(s))

    def validate(self) -> None:
        problems = self._stage_problems() + self._choice_problems() + self._range_problems() + self._path_problems()
        if problems:
            raise ConfigError("Hyper-SD: bad distillation settings:\n  " + "\n  ".join(problems))

    def _stage_problems(self) -> list[str]:
        """The model, the stages and what they need."""
        problems: list[str] = []
        if not self.model:
            problems.append("--model is required (a .safetensors file or a diffusers folder)")
        if self.base not in ("auto", *BASES):
            problems.append(f"base must be auto, sd15 or sdxl, got {self.base!r}")
        problems += stage_problems(self.stages)
        if self.solver_steps < 2 or 1000 % self.solver_steps:
            problems.append(f"solver_steps must divide 1000 (e.g. 40), got {self.solver_steps}")
        elif any(self.solver_steps % k for k in self.tscd_ks if k >= 1):
            problems.append(f"solver_steps={self.solver_steps} must be divisible by every stage k {self.tscd_ks}")
        for stage, steps in self.stage_steps.items():
            if stage not in self.stages:
                problems.append(f"stage_steps names {stage!r}, which is not in stages {list(self.stages)}")
            elif not isinstance(steps, int) or steps < 1:
                problems.append(f"stage_steps[{stage!r}] must be a whole number >= 1, got {steps!r}")
        if FEEDBACK in self.stages and not self.reward:
            problems.append(
                "the feedback stage needs a reward model: --reward KIND:PATH (e.g. clip:/models/clip-vit-l14)"
            )
        return problems

    def _choice_problems(self) -> list[str]:
        """Rates, timestep ranges, step-count lists and the named choices."""
        problems: list[str] = []
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be above 0 (e.g. 1e-4), got {self.learning_rate}")
        if self.dmd_fake_lr is not None and not self.dmd_fake_lr > 0:
            problems.append(f"dmd_fake_lr must be above 0, got {self.dmd_fake_lr}")
        if not 0 <= self.dmd_t_min < self.dmd_t_max <= 999:
            problems.append(
                f"dmd_t_min/dmd_t_max must satisfy 0 <= min < max <= 999, got {self.dmd_t_min}, {self.dmd_t_max}"
            )
        for name in ("unified_steps", "feedback_steps", "report_steps"):
            counts = getattr(self, name)
            if not counts or any(n < 1 or n > 50 for n in counts):
                problems.append(f"{name} must be step counts from 1 to 50 such as 1,2,4,8, got {counts}")
        if self.report not in REPORT_LEVELS:
            problems.append(f"report must be one of {REPORT_LEVELS}, got {self.report!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            problems.append(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0 <= self.lr_end_ratio <= 1:
            problems.append(f"lr_end_ratio must be between 0 and 1, got {self.lr_end_ratio}")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.dmd_fake_warmup < 0:
            problems.append("warmup_steps, weight_decay and dmd_fake_warmup cannot be negative")
        if self.loss not in LOSSES:
            problems.append(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            problems.append(f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        if self.lora_targets not in ("attn", "attn_ff", "all"):
            problems.append(f"lora_targets must be attn, attn_ff or all, got {self.lora_targets!r}")
        return problems

    def _range_problems(self) -> list[str]:
        """Counts that must be at least 1, and the other numeric ranges."""
        problems: list[str] = []
        for name in (
            "steps_per_stage",
            "rank",
            "batch_size",
            "grad_accum",
            "checkpoint_every",
            "synth_steps",
            "dmd_fake_updates",
            "dmd_regression_steps",
            "report_noises",
            "report_samples",
            "log_every",
            "synth_per_prompt",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay <= 1.0:
            problems.append(f"ema_decay must be in [0, 1], got {self.ema_decay}")
        if self.omega_min is not None and self.omega_max is not None and self.omega_min > self.omega_max:
            problems.append(f"omega_min {self.omega_min} > omega_max {self.omega_max}")
        if self.resolution is not None and (self.resolution < 32 or self.resolution % 32):
            # the model's own rule (SD1.5/SDXL: a multiple of 64) is checked once it is loaded
            problems.append(f"resolution must be a multiple of 64 (>= 64), got {self.resolution}")
        return problems

    def _path_problems(self) -> list[str]:
        """The output name and folders."""
        problems: list[str] = []
        if not self.out or any(c in self.out for c in "/\\:") or self.out.startswith(".") or len(self.out) > 120:
            problems.append(
                f"--out must be a plain file name without folders (at most 120 characters), got {self.out[:140]!r}"
            )
        for name in ("output_dir", "work_dir"):
            blocker = _file_in_the_way(getattr(self, name))
            if blocker:
                problems.append(
                    f"--{name.replace('_', '-')} {getattr(self, name)} lies under {blocker}, which is a file; choose a folder"
                )
        return problems

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["stages"] = list(self.stages)
        d["sample_prompts"] = list(self.sample_prompts)
        d["report_prompts"] = list(self.report_prompts)
        d["unified_steps"] = list(self.unified_steps)
        d["feedback_steps"] = list(self.feedback_steps)
        d["report_steps"] = list(self.report_steps)
        d["stage_weights"] = {str(k): list(v) for k, v in self.stage_weights.items()}
        return d


#: Presets: how long and how big; everything else stays at the defaults.
PRESETS: dict[str, dict[str, Any]] = {
    # quick: check the pipeline in minutes; 16 regression pairs instead of 64 (their teacher results come first)
    "quick": {"steps_per_stage": 100, "rank": 16, "batch_size": 2, "checkpoint_every": 50, "dmd_regression_pairs": 16},
    "standard": {"steps_per_stage": 1000, "rank": 64, "batch_size": 4, "adversarial": True},
    "high": {"steps_per_stage": 4000, "rank": 64, "batch_size": 8, "adversarial": True, "ema_decay": 0.95},
}

_FIELDS = {f.name: f for f in dataclasses.fields(DistillConfig)}


def _file_in_the_way(folder: str | None) -> pathlib.Path | None:
    """The nearest existing ancestor of ``folder`` (itself included) when it is a file, else None."""
    if not folder:
        return None
    path = pathlib.Path(folder).expanduser().absolute()
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def _coerce(name: str, value: Any) -> Any:
    if name == "stages":
        return parse_stages(value)
    if name in ("sample_prompts", "report_prompts"):
        if isinstance(value, str):
            value = [v.strip() for v in value.split("|") if v.strip()]
        return tuple(str(v) for v in value)
    if name in ("unified_steps", "feedback_steps", "report_steps"):
        return tuple(int(v) for v in (value.split(",") if isinstance(value, str) else value))
    if name == "stage_weights":
        return {int(k): (float(v[0]), float(v[1])) for k, v in dict(value).items()}
    if name == "stage_steps":
        if isinstance(value, str):  # "dmd=2000,feedback=500"
            value = dict(part.split("=", 1) for part in value.split(",") if part.strip())
        return {str(k).strip().lower(): int(v) for k, v in dict(value).items()}
    return value


def apply_overrides(cfg: DistillConfig, values: dict[str, Any], source: str) -> DistillConfig:
    """A copy of cfg with values applied; unknown keys are refused (a typo must not be silently ignored)."""
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"Hyper-SD: unknown setting(s) {unknown} in {source}; known: {sorted(_FIELDS)}")
    try:
        coerced = {k: _coerce(k, v) for k, v in values.items()}
    except (TypeError, ValueError, AttributeError, IndexError) as err:
        raise ConfigError(
            f"Hyper-SD: a setting in {source} has the wrong form ({err}); see --help for each one"
        ) from err
    wrong = [f"{k}={v!r}" for k, v in coerced.items() if not _type_ok(k, v)]
    if wrong:
        raise ConfigError(f"Hyper-SD: setting(s) of the wrong type in {source}: {', '.join(wrong)}")
    return dataclasses.replace(cfg, **coerced)


def _type_ok(name: str, value: Any) -> bool:
    """A config file's value against the field's declared type (a JSON string where a number belongs is refused)."""
    annotation = str(_FIELDS[name].type)
    if value is None:
        return "None" in annotation
    if annotation.startswith(("tuple", "dict")):
        return True  # shaped by _coerce
    if annotation.startswith("bool"):
        return isinstance(value, bool)
    if annotation.startswith("int"):
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation.startswith("float"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation.startswith("str"):
        return isinstance(value, str)
    return True


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
