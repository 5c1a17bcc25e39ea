"""``python -m hypersd distill``: distil an SD1.5/SDXL model into few-step LoRAs with Hyper-SD's recipe.

Stages (``--stages``): TSCD with 8, 4, 2 and 1 segments (one LoRA per step count), then ``dmd`` (score
distillation: the unified 1-8-step LoRA) and ``feedback`` (a reward model, ``--reward KIND:PATH``). After the run
a quality report measures every LoRA and writes the best sampler/steps/gamma/CFG into its metadata.

Example::

    python -m hypersd distill --model models/Stable-diffusion/house.safetensors --data train/ --out house-hyper \\
        --preset standard --output-dir models/Lora
    accelerate launch --num_processes 2 -m hypersd distill --config run.toml --resume

Settings: dataclass defaults < --preset < --config (JSON/TOML) < flags. Ctrl-C (or SIGTERM) saves a checkpoint and stops;
run the same command with --resume to continue. Exit codes: 0 done, 1 error, 2 bad arguments, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from .config import PRESETS, ConfigError, build_config


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hypersd distill", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _run_arguments(p)
    _tscd_arguments(p)
    _dmd_arguments(p.add_argument_group("score distillation (stage dmd; defaults from DMD2)"))
    _feedback_arguments(p.add_argument_group("human feedback (stage feedback; defaults from ReFL)"))
    _report_arguments(p.add_argument_group("quality report"))
    _training_arguments(p)
    return p


def _run_arguments(p: argparse.ArgumentParser) -> None:
    """What to distil, from what, into where; resume/overwrite."""
    p.add_argument("--model", help="SD1.5/SDXL checkpoint (.safetensors as WebUI stores it) or a diffusers folder")
    p.add_argument(
        "--data", help="image folder (+ .txt/.caption), kohya N_name/ folders, metadata.jsonl, or a prompt list .txt"
    )
    p.add_argument("--out", help="output name: <output-dir>/<out>.safetensors and <out>-<k>step.safetensors")
    p.add_argument("--output-dir", dest="output_dir")
    p.add_argument(
        "--work-dir", dest="work_dir", help="where <out>.run/ (log, checkpoints, samples) goes; default --output-dir"
    )
    p.add_argument("--config", help="JSON or TOML file with settings (flat, or under [distill])")
    p.add_argument("--preset", choices=sorted(PRESETS))
    p.add_argument("--resume", action="store_true", help="continue the run of the same --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start again, deleting an earlier run of the same --out")
    p.add_argument("--base", choices=("auto", "sd15", "sdxl"))
    p.add_argument("--tokenizer", help="folder with the CLIP tokenizer (vocab.json, merges.txt) for single-file models")


def _tscd_arguments(p: argparse.ArgumentParser) -> None:
    """The stages and TSCD's settings."""
    p.add_argument(
        "--stages",
        help="comma-separated: TSCD segment counts and dmd/feedback, default 8,4,2,1 "
        "(the whole recipe: 8,4,2,1,dmd,feedback)",
    )
    p.add_argument("--steps-per-stage", dest="steps_per_stage", type=int)
    p.add_argument("--stage-steps", dest="stage_steps", help="per-stage step counts, e.g. dmd=2000,feedback=500")
    p.add_argument("--solver-steps", dest="solver_steps", type=int)
    p.add_argument(
        "--trailing-grid", dest="trailing_grid", type=_bool, help="true/false: train on inference's timesteps (false)"
    )
    p.add_argument("--omega-min", dest="omega_min", type=float)
    p.add_argument("--omega-max", dest="omega_max", type=float)
    p.add_argument("--ema-decay", dest="ema_decay", type=float)
    p.add_argument("--loss", choices=("huber", "mse"))
    p.add_argument("--huber-c", dest="huber_c", type=float)
    p.add_argument("--offset-noise", dest="offset_noise", type=float)
    p.add_argument("--adversarial", type=_bool, help="true/false: hinge GAN on frozen-teacher mid-block features")


def _dmd_arguments(g: Any) -> None:
    g.add_argument("--dmd-guidance", dest="dmd_guidance", type=float, help="the real score's CFG (SD1.5 1.75, SDXL 8)")
    g.add_argument(
        "--dmd-fake-updates", dest="dmd_fake_updates", type=int, help="fake-score updates per student update (5)"
    )
    g.add_argument(
        "--dmd-fake-lr", dest="dmd_fake_lr", type=float, help="the fake score's learning rate (default --lr)"
    )
    g.add_argument(
        "--dmd-fake-warmup",
        dest="dmd_fake_warmup",
        type=int,
        help="fake-only updates opening each stage that trains the fake score (dmd, feedback) (0)",
    )
    g.add_argument(
        "--dmd-regression-weight", dest="dmd_regression_weight", type=float, help="paired regression weight (0.25)"
    )
    g.add_argument("--dmd-regression-pairs", dest="dmd_regression_pairs", type=int)
    g.add_argument(
        "--dmd-regression-multistep",
        dest="dmd_regression_multistep",
        type=_bool,
        help="true/false: also regress a second batch of pairs at the later steps of the unified step counts (true)",
    )
    g.add_argument(
        "--unified-export-ema",
        dest="unified_export_ema",
        type=_bool,
        help="true/false: write the unified LoRA (dmd, feedback) as the EMA of its weights (true)",
    )
    g.add_argument(
        "--dmd-adversarial-weight", dest="dmd_adversarial_weight", type=float, help="GAN term weight (0: off)"
    )
    g.add_argument(
        "--unified-steps", dest="unified_steps", help="step counts the unified LoRA is trained for (1,2,4,8)"
    )


def _feedback_arguments(g: Any) -> None:
    g.add_argument("--reward", help="the reward model KIND:PATH (demo, clip, pickscore, aesthetic, imagereward, hpsv2)")
    g.add_argument("--feedback-alpha", dest="feedback_alpha", type=float, help="hinge threshold (the kind's default)")
    g.add_argument("--feedback-weight", dest="feedback_weight", type=float, help="reward loss weight (1e-3)")
    g.add_argument(
        "--feedback-steps", dest="feedback_steps", help="student step counts whose last step is scored (1,2,4,8)"
    )
    g.add_argument(
        "--feedback-decode-size", dest="feedback_decode_size", type=int, help="decode at this size (less memory)"
    )


def _report_arguments(g: Any) -> None:
    g.add_argument(
        "--report", choices=("off", "quick", "full"), help="measure every LoRA after the run (default quick)"
    )
    g.add_argument("--report-noises", dest="report_noises", type=int, help="noises per setting while choosing (16)")
    g.add_argument("--report-samples", dest="report_samples", type=int, help="images per LoRA and step count (64)")
    g.add_argument("--report-steps", dest="report_steps", help="step counts to measure (1,2,4,8)")
    g.add_argument(
        "--report-prompts", dest="report_prompts", help="'|'-separated prompts (default: --sample-prompts, captions)"
    )
    g.add_argument("--report-scorer", dest="report_scorer", help="prompt-fidelity scorer KIND:PATH (default: --reward)")


def _training_arguments(p: argparse.ArgumentParser) -> None:
    """LoRA, optimiser, precision, data and bookkeeping."""
    p.add_argument("--rank", type=int)
    p.add_argument("--alpha", type=float)
    p.add_argument("--lora-targets", dest="lora_targets", choices=("attn", "attn_ff", "all"))
    p.add_argument("--learning-rate", "--lr", dest="learning_rate", type=float)
    p.add_argument("--warmup-steps", dest="warmup_steps", type=int)
    p.add_argument("--lr-schedule", dest="lr_schedule", choices=("constant", "cosine"), help="per stage (constant)")
    p.add_argument("--lr-end-ratio", dest="lr_end_ratio", type=float, help="cosine: the last step's lr / lr (0.1)")
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--grad-accum", dest="grad_accum", type=int)
    p.add_argument("--mixed-precision", dest="mixed_precision", choices=("no", "fp16", "bf16"))
    p.add_argument("--gradient-checkpointing", dest="gradient_checkpointing", action="store_const", const=True)
    p.add_argument("--use-8bit-adam", dest="use_8bit_adam", action="store_const", const=True)
    p.add_argument("--seed", type=int)
    p.add_argument("--resolution", type=int)
    p.add_argument("--buckets", type=_bool, help="true/false aspect buckets (default: on for SDXL)")
    p.add_argument("--synth-steps", dest="synth_steps", type=int, help="prompt-list mode: teacher steps per latent")
    p.add_argument("--checkpoint-every", dest="checkpoint_every", type=int)
    p.add_argument("--sample-prompts", dest="sample_prompts", help="'|'-separated prompts for the per-stage grids")
    p.add_argument(
        "--export-ema", dest="export_ema", action="store_const", const=True, help="every stage's LoRA as its EMA"
    )
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar (the JSON-lines log is always written)")
    p.add_argument(
        "--stop-file", dest="stop_file", help="stop like Ctrl-C (checkpoint, exit 130) as soon as this file exists"
    )
    p.add_argument("--stop-after-steps", type=int, help=argparse.SUPPRESS)  # tests: behave as if Ctrl-C came


_NOT_CONFIG = {"config", "preset", "resume", "overwrite", "no_progress", "stop_after_steps", "stop_file"}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {k: v for k, v in vars(args).items() if k not in _NOT_CONFIG and v is not None}
    try:
        cfg = build_config(args.preset, args.config, **overrides)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2

    stop = threading.Event()
    previous = None
    stop_file = args.stop_file

    def stop_requested() -> bool:
        # the stop file works on every platform and for every accelerate process (WebUI's Train tab uses it)
        return stop.is_set() or bool(stop_file and os.path.exists(stop_file))

    def on_sigint(_signum: int, _frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: give up at once
            raise KeyboardInterrupt
        stop.set()
        print("\nHyper-SD: stopping after this step and saving a checkpoint (Ctrl-C again to abort)", file=sys.stderr)

    if threading.current_thread() is threading.main_thread():
        # SIGTERM too: torchrun / accelerate launch and job schedulers stop workers with it
        previous = {sig: signal.signal(sig, on_sigint) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        from .checkpoint import CheckpointError
        from .data import DataError
        from .engine import TrainingError, run_distillation
        from .models import ModelError
        from .rewards import RewardError

        try:
            result = run_distillation(
                cfg,
                resume=args.resume,
                overwrite=args.overwrite,
                stop_requested=stop_requested,
                progress=not args.no_progress,
                stop_after_steps=args.stop_after_steps,
            )
        except (DataError, ModelError, TrainingError, ConfigError, RewardError, CheckpointError) as err:
            print(err, file=sys.stderr)
            return 1
    finally:
        for sig, handler in (previous or {}).items():
            signal.signal(sig, handler)
    if int(os.environ.get("RANK", "0")) != 0:
        return 130 if result.interrupted else 0
    if result.interrupted:
        print(f"Hyper-SD: interrupted at step {result.steps}; run again with --resume to continue", file=sys.stderr)
        return 130
    print(f"Hyper-SD: done after {result.steps} steps: {result.final_lora}")
    for k, path in result.stage_loras.items():
        print(f"  stage {'k=' if isinstance(k, int) else ''}{k}: {path}")
    if result.report:
        print(report_summary(result.report))
    return 0


def report_summary(report: dict[str, Any]) -> str:
    """The quality report in a few lines: each LoRA's recommended settings and what the report cost."""
    lines = ["Hyper-SD: quality report (best settings written into each LoRA's metadata):"]
    for lora in report["loras"].values():
        rec = lora["recommended"]
        gamma = f", gamma {rec['gamma']:g}" if rec.get("gamma") is not None else ""
        best = lora["best"][rec["steps"]]
        fid = f", fidelity {best['fidelity']:.3f}" if "fidelity" in best else ""
        lines.append(f"  {lora['label']:<10} {rec['steps']} steps, {rec['sampler']}{gamma}, CFG {rec['cfg']:g}: "
                     f"pixel MSE {best['pixel_mse']:.4g}{fid}")  # fmt: skip
    cost = report["cost"]
    lines.append(
        f"  cost: {cost['unet_calls']} UNet calls, {cost['seconds']} s (--report off|quick|full, --report-samples)"
    )
    lines += [f"  warning: {w}" for w in report.get("warnings", [])]
    return "\n".join(lines)
