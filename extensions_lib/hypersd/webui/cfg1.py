"""CFG 1 costs one UNet call per step: skip WebUI's unconditional pass for this job only.

WebUI v1.10's CFG denoiser always evaluates cond and uncond together; the CFG scale is never
consulted (``modules/sd_samplers_cfg_denoiser.py``), so a few-step LoRA at CFG 1 pays for a
pass whose result is multiplied by zero.  The denoiser skips the uncond pass when the option
``skip_early_cond`` covers the current step; at CFG 1 it then combines with scale 1.0, which is
exactly the conditional prediction.  We set that option around each call of *this job's*
denoiser only (an instance attribute on ``p.sampler.model_wrap_cfg``, gone with the sampler)
and restore it in ``finally``, and we drop the "Skip Early CFG" infotext entry this adds, so a
pasted infotext never switches CFG off for the user.
"""

from __future__ import annotations

from typing import Any

OPTION = "skip_early_cond"
INFOTEXT_KEY = "Skip Early CFG"
MARK = "_hypersd_cfg1"


def can_skip_uncond(p: Any) -> bool:
    """Exact only at CFG 1 with one cond per image: an AND-prompt's weights still mix in the uncond."""
    if float(getattr(p, "cfg_scale", 0)) != 1.0:
        return False
    prompts = getattr(p, "prompts", None) or getattr(p, "all_prompts", None) or []
    return not any(" AND " in str(x) for x in prompts)


def install(p: Any, opts: Any) -> bool:
    """Make ``p.sampler``'s CFG denoiser skip the uncond pass; returns whether it was installed."""
    denoiser = getattr(getattr(p, "sampler", None), "model_wrap_cfg", None)
    if denoiser is None or getattr(denoiser, MARK, False) or not can_skip_uncond(p):
        return False
    original = denoiser.forward

    def forward(*args, **kwargs):
        missing = object()
        old_entry = p.extra_generation_params.get(INFOTEXT_KEY, missing)
        old = opts.data.get(OPTION, missing)
        opts.data[OPTION] = 1.0
        try:
            return original(*args, **kwargs)
        finally:
            if old is missing:
                opts.data.pop(OPTION, None)
            else:
                opts.data[OPTION] = old
            if old_entry is missing:
                p.extra_generation_params.pop(INFOTEXT_KEY, None)
            else:
                p.extra_generation_params[INFOTEXT_KEY] = old_entry

    denoiser.forward = forward
    setattr(denoiser, MARK, True)
    return True
