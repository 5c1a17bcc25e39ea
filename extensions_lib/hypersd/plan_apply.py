"""Write a :class:`~hypersd.plan.Plan` onto WebUI's processing object (see :mod:`hypersd.plan` for the timing)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hypersd import loratags

if TYPE_CHECKING:
    from hypersd.plan import Plan


class HyperPlanError(RuntimeError):
    """Raised by :func:`apply_plan` for a plan with errors: generation must not start."""


def _with_tag(prompt: Any, plan: Plan) -> Any:
    if isinstance(prompt, list):
        return [_with_tag(x, plan) for x in prompt]
    if not isinstance(prompt, str):
        return prompt
    return loratags.add_lora_tag(prompt, plan.lora_name, plan.lora_weight, plan.lora_aliases)


def apply_plan(p: Any, plan: Plan) -> list[str]:
    """Write ``plan`` onto the processing object ``p``; returns what was changed ("steps: 20 → 4"…).

    Idempotent: applying the same plan twice changes nothing more (the LoRA tag is never doubled,
    a tag the user typed for the same file is replaced in place).  A disabled plan touches nothing;
    a plan with errors raises :class:`HyperPlanError` before anything is changed.
    """
    if not plan.enabled:
        return []
    if plan.errors:
        raise HyperPlanError("\n".join(plan.errors))
    changes: list[str] = []

    def put(attr: str, value: Any) -> None:
        old = getattr(p, attr, None)
        if old != value:
            setattr(p, attr, value)
            changes.append(f"{attr}: {old!r} → {value!r}")

    for attr, value in (
        ("sampler_name", plan.sampler_name),
        ("scheduler", plan.scheduler),
        ("steps", plan.steps),
        ("cfg_scale", plan.cfg_scale),
        ("eta", plan.eta),
        ("distilled_cfg_scale", plan.distilled_cfg_scale),  # Forge's FLUX.1-dev guidance; None on SD models
        ("width", plan.width),
        ("height", plan.height),
    ):
        if value is not None:
            put(attr, value)

    if plan.lora_name:
        # all_prompts / all_hr_prompts feed the Lora extension per batch (every prompt, since WebUI takes the
        # networks of a batch from its first prompt); main_prompt, prompt and hr_prompt keep the UI and the
        # returned info consistent.  Empty prompt/hr_prompt strings mean "same as the prompt": left alone.
        for attr in ("all_prompts", "all_hr_prompts", "main_prompt", "prompt", "hr_prompt"):
            old = getattr(p, attr, None)
            if old is None or (attr in ("prompt", "hr_prompt") and old == ""):
                continue
            new = _with_tag(old, plan)
            if new != old:
                setattr(p, attr, new)
                changes.append(f"{attr}: {plan.lora_tag}")

    if plan.hr_second_pass_steps is not None:
        put("hr_second_pass_steps", plan.hr_second_pass_steps)
    if plan.reset_hr_sampler:
        # None = "Use same sampler / scheduler" (txt2img's init copies the first pass's scheduler later).
        for attr in ("hr_sampler_name", "hr_scheduler"):
            if getattr(p, attr, None) is not None:
                put(attr, None)

    if plan.infotext:
        # p.extra_generation_params may be shared between jobs: replace the dict, never mutate it.
        old_params = getattr(p, "extra_generation_params", None) or {}
        new_params = {**old_params, **dict(plan.infotext)}
        if new_params != old_params:
            p.extra_generation_params = new_params
            changes.append("infotext: " + ", ".join(k for k, _ in plan.infotext))
    return changes
