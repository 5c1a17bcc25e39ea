"""How much disk a distillation run needs, before it starts; the engine checks the same number again.

LoRA parameters are exactly linear in the rank: each wrapped Linear adds rank × (in + out) parameters, each wrapped
Conv2d rank × (in × kh × kw + out). ``PARAMS_PER_RANK`` holds the count at rank 1 for the real SD1.5 and SDXL UNets
and each ``lora_targets`` choice of hypersd.distill.lora.TARGETS; tests/test_train_estimate.py recomputes it with
diffusers + peft on the meta device (hypersd.distill.lora.add_lora on the published UNet configs) and by hand.

Disk use (hypersd.distill.engine: ``_free_disk_check``): one fp16 LoRA per stage plus the final one, and two fp32
checkpoints while the newer one is written (checkpoint.mark_latest keeps one). A checkpoint holds the LoRA, its EMA
and AdamW's two moments (4 copies; counted as 5 for the RNG states, config and slack); with the adversarial loss
also the discriminator (hypersd.distill.views.Discriminator, ~1.6 M parameters) and its two AdamW moments. That
is about 19 MiB per checkpoint: small, but counted because it is exact and cheap.
"""

from __future__ import annotations

import operator
import pathlib
import shutil

#: (base, lora_targets) → LoRA parameters at rank 1
PARAMS_PER_RANK: dict[tuple[str, str], int] = {
    ("sd15", "attn"): 199_296,
    ("sd15", "attn_ff"): 423_936,
    ("sd15", "all"): 1_050_816,
    ("sdxl", "attn"): 1_451_520,
    ("sdxl", "attn_ff"): 2_659_840,
    ("sdxl", "all"): 3_074_240,
}

#: hypersd.distill.views.Discriminator on the UNet's last block (block_out_channels[-1]: 1280 for SD1.5 and SDXL)
DISC_CHANNELS = 1280
DISC_HIDDEN = 128
SLACK = 64 * 2**20  # log, sample grids, config, the temporary copy of an atomic write


def lora_parameter_count(base: str, rank: int, targets: str = "all") -> int:
    """LoRA parameters of a rank-``rank`` LoRA on ``targets`` of a ``base`` ("sd15" | "sdxl") UNet."""
    try:
        whole = operator.index(rank)
    except TypeError:
        whole = 0
    if isinstance(rank, bool) or whole < 1:
        raise ValueError(f"Hyper-SD: the LoRA rank must be a whole number of at least 1, got {rank!r}")
    try:
        return PARAMS_PER_RANK[(base, targets)] * whole
    except KeyError:
        known = ", ".join(sorted({t for _, t in PARAMS_PER_RANK}))
        raise ValueError(
            f"Hyper-SD: no size estimate for base {base!r} with LoRA targets {targets!r}; "
            f"base is sd15 or sdxl, targets one of {known}"
        ) from None


def discriminator_parameter_count(channels: int = DISC_CHANNELS, hidden: int = DISC_HIDDEN) -> int:
    """Parameters of views.Discriminator: conv3×3 → GroupNorm → conv3×3 → GroupNorm → conv1×1 to one channel."""
    conv1 = channels * hidden * 9 + hidden
    conv2 = hidden * hidden * 9 + hidden
    norms = 2 * 2 * hidden
    head = hidden + 1
    return conv1 + conv2 + norms + head


def disk_needed_for(params: int, n_stages: int, adversarial: bool = False, fake_score: bool = False) -> int:
    """Bytes for a run whose LoRA has ``params`` parameters (the engine passes its real count).

    ``fake_score``: score distillation's second adapter (same size as the LoRA) and its two AdamW moments are in
    the checkpoints too."""
    lora_bytes = params * 2
    checkpoint_bytes = params * 4 * 5
    if fake_score:
        checkpoint_bytes += params * 4 * 3
    if adversarial:
        checkpoint_bytes += discriminator_parameter_count() * 4 * 3  # weights + two AdamW moments, fp32
    return lora_bytes * (n_stages + 1) + 2 * checkpoint_bytes + SLACK


def disk_needed(
    base: str, rank: int, targets: str, n_stages: int, adversarial: bool = False, fake_score: bool = False
) -> int:
    """Bytes for a run of ``base`` with a LoRA of ``rank`` on ``targets`` over ``n_stages`` stages."""
    return disk_needed_for(lora_parameter_count(base, rank, targets), n_stages, adversarial, fake_score)


def nearest_existing(folder: str | pathlib.Path) -> pathlib.Path:
    """``folder`` or its nearest parent that exists (an output folder is created only when the run starts)."""
    probe = pathlib.Path(folder).expanduser().resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def check_disk(folder: str | pathlib.Path, needed: int) -> str | None:
    """None when ``folder`` (or its nearest existing parent) has ``needed`` bytes free; else what to do."""
    path = pathlib.Path(folder).expanduser().resolve()
    free = shutil.disk_usage(nearest_existing(path)).free
    if free >= needed:
        return None
    return (
        f"Hyper-SD: not enough disk space for {path}: {free / 2**20:,.0f} MiB free, about {needed / 2**20:,.0f} MiB "
        "needed for the stage LoRAs and checkpoints; free some space, choose another output folder, lower the LoRA "
        "rank, or use fewer stages"
    )
