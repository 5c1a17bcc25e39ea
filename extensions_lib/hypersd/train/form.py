"""The Train tab's form → engine settings (``DistillConfig`` fields). Blank fields keep the preset's value."""

from __future__ import annotations

from typing import Any

from hypersd.train.names import output_name_problem

#: UI label → engine preset (hypersd.distill.config.PRESETS)
TRAINING_PRESETS = {"Quick test": "quick", "Standard": "standard", "High quality": "high"}
BUCKET_CHOICES = ("Auto", "On", "Off")
PRECISION_CHOICES = ("Auto", "no", "fp16", "bf16")
REPORT_CHOICES = ("Auto", "off", "quick", "full")


class FormError(ValueError):
    """Bad form values; the message lists every one."""


def _number(label: str, text: Any, kind: type, problems: list[str], minimum: float | None = None) -> Any:
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        value = kind(str(text).strip()) if kind is float else int(float(str(text).strip()))
        if kind is int and float(str(text).strip()) != value:
            raise ValueError
    except ValueError:
        problems.append(f"{label}: expected {'a whole number' if kind is int else 'a number'}, got {text!r}")
        return None
    if minimum is not None and value < minimum:
        problems.append(f"{label}: must be at least {minimum:g}, got {value:g}")
        return None
    return value


def _stages(stages: str, unified: bool, feedback: bool, reward: str, problems: list[str]) -> dict[str, Any]:
    """The stage list: the TSCD counts typed (blank: the engine's 8,4,2,1 when a later stage is ticked), then the
    score-distillation and feedback stages ticked; the reward model the feedback stage needs."""
    from hypersd.distill.config import DMD, FEEDBACK, DistillConfig

    out: dict[str, Any] = {}
    ks: list[int] = []
    if stages and stages.strip():
        try:
            ks = [int(part) for part in stages.replace(" ", "").split(",") if part]
        except ValueError:
            problems.append(f"Stages: expected step counts such as 8,4,2,1, got {stages!r}")
            return out
        if any(k < 1 for k in ks) or ks != sorted(ks, reverse=True) or len(set(ks)) != len(ks):
            problems.append(f"Stages: distinct counts from many to few segments, such as 8,4,2,1; got {stages!r}")
            return out
    named = [name for name, on in ((DMD, unified), (FEEDBACK, feedback)) if on]
    if ks or named:
        tscd = [str(k) for k in ks] or list(DistillConfig().stages)
        out["stages"] = [*tscd, *named]
    reward = (reward or "").strip()
    if feedback and not reward:
        problems.append(
            "Reward model: human feedback needs one, as KIND:PATH (e.g. clip:/models/clip-vit-large-patch14)"
        )
    if reward:
        out["reward"] = reward
    return out


def settings_from_form(
    *,
    stages: str = "",
    unified: bool = False,
    feedback: bool = False,
    reward: str = "",
    steps_per_stage: Any = None,
    rank: Any = None,
    learning_rate: Any = None,
    batch_size: Any = None,
    cfg_min: Any = None,
    cfg_max: Any = None,
    resolution: Any = None,
    buckets: str = "Auto",
    precision: str = "Auto",
    gradient_checkpointing: bool = False,
    sample_prompts: str = "",
    report: str = "Auto",
    report_samples: Any = None,
) -> dict[str, Any]:
    """Engine settings that differ from the preset; FormError naming every bad field."""
    problems: list[str] = []
    out: dict[str, Any] = {}
    out.update(_stages(stages, unified, feedback, reward, problems))
    given = {
        "steps_per_stage": steps_per_stage, "rank": rank, "learning_rate": learning_rate, "batch_size": batch_size,
        "omega_min": cfg_min, "omega_max": cfg_max, "resolution": resolution,
    }  # fmt: skip
    out.update(_numbers(given, problems))
    out.update(_choices(buckets, precision, report, problems))
    if gradient_checkpointing:
        out["gradient_checkpointing"] = True
    prompts = [line.strip() for line in (sample_prompts or "").splitlines() if line.strip()]
    if prompts:
        out["sample_prompts"] = prompts
    samples = _number("Report images", report_samples, int, problems, 2)
    if samples is not None:
        out["report_samples"] = samples
        out["report_noises"] = min(16, samples)
    if problems:
        raise FormError("Hyper-SD: fix these settings:\n- " + "\n- ".join(problems))
    return out


NUMBER_FIELDS = (  # engine name, the form's label, type, least value
    ("steps_per_stage", "Steps per stage", int, 1),
    ("rank", "LoRA rank", int, 1),
    ("learning_rate", "Learning rate", float, 0),
    ("batch_size", "Batch size", int, 1),
    ("omega_min", "CFG range (from)", float, 1),
    ("omega_max", "CFG range (to)", float, 1),
    ("resolution", "Resolution", int, 64),
)


def _numbers(given: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """The number fields filled in (blank: the preset's), each checked alone and then together."""
    out: dict[str, Any] = {}
    for name, label, kind, minimum in NUMBER_FIELDS:
        value = _number(label, given[name], kind, problems, minimum)
        if value is not None:
            out[name] = value
    if "learning_rate" in out and out["learning_rate"] <= 0:
        problems.append("Learning rate: must be above 0")
        del out["learning_rate"]
    if "resolution" in out and out["resolution"] % 64:
        problems.append(f"Resolution: must be a multiple of 64, got {out['resolution']}")
    if "omega_min" in out and "omega_max" in out and out["omega_min"] > out["omega_max"]:
        problems.append(f"CFG range: from {out['omega_min']:g} is above to {out['omega_max']:g}")
    return out


def _choices(buckets: str, precision: str, report: str, problems: list[str]) -> dict[str, Any]:
    """The radio choices other than Auto (Auto: the preset's / the model's)."""
    out: dict[str, Any] = {}
    if buckets not in BUCKET_CHOICES:
        problems.append(f"Aspect buckets: choose one of {', '.join(BUCKET_CHOICES)}")
    elif buckets != "Auto":
        out["buckets"] = buckets == "On"
    if precision not in PRECISION_CHOICES:
        problems.append(f"Precision: choose one of {', '.join(PRECISION_CHOICES)}")
    elif precision != "Auto":
        out["mixed_precision"] = precision
    if report not in REPORT_CHOICES:
        problems.append(f"Quality report: choose one of {', '.join(REPORT_CHOICES)}")
    elif report != "Auto":
        out["report"] = report
    return out


def valid_output_name(name: str) -> str | None:
    """None when ``name`` is usable as a LoRA file name; else what is wrong with it."""
    return output_name_problem(name)
