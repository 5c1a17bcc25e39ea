"""``python -m hypersd demo``: the whole Hyper-SD recipe on a tiny built-in SD1.5, on the CPU, with no downloads.

The demo renders its training images (coloured shapes with captions), then runs exactly what a studio runs:
``python -m hypersd distill`` (its ``main``, the same code path) on the shipped teacher (``assets/teacher``: a tiny
SD1.5 in diffusers layout), with the stages 8 -> 4 -> 2 -> 1 (TSCD), dmd (score distillation: the unified LoRA) and
feedback (the shipped classifier as the reward model). The engine's quality report measures every LoRA; the demo
prints its numbers as ratios to the teacher and points to the report.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

DEMO_STAGES = "8,4,2,1,dmd,feedback"
#: The demo's distillation settings (flags of ``python -m hypersd distill``); see README "Demo" for what each buys.
DEMO_SETTINGS: dict[str, str] = {
    "--steps-per-stage": "50",
    # measured (README "Demo"): 80 dmd steps with the multistep regression bring the unified LoRA's 1-step Fréchet
    # distance under half of TSCD's; 15 feedback steps raise the reward without moving it away from the teacher
    "--stage-steps": "dmd=80,feedback=15",
    "--batch-size": "16",
    "--rank": "8",
    "--learning-rate": "1e-3",
    "--resolution": "32",
    "--omega-min": "3",  # one guidance scale (the report's reference CFG): a LoRA has no CFG input to vary it by
    "--omega-max": "3",
    "--dmd-guidance": "3",
    "--loss": "mse",
    "--ema-decay": "0.95",
    "--dmd-fake-updates": "2",
    # measured on the demo (README "Demo"): without a warm-up the fake score starts as the unguided teacher while the
    # TSCD student has CFG baked in, and the first student updates went the wrong way (1-step FD 6.5 -> 5.3 with it);
    # a regression weight of 2 on 128 pairs (instead of DMD's 0.25 on 64) brought the 1-step FD to about 3
    "--dmd-fake-warmup": "40",
    "--dmd-regression-weight": "2",
    "--dmd-regression-pairs": "128",
    "--dmd-regression-multistep": "true",  # 2-step Fréchet distance 1.13 -> 0.63 (at 80 dmd steps)
    "--feedback-weight": "0.05",
    "--feedback-steps": "1,2",
    "--report": "quick",
    "--report-noises": "16",
    "--report-samples": "128",
    "--checkpoint-every": "100000",
}
QUICK_SETTINGS = {"--steps-per-stage": "4", "--stage-steps": "dmd=3,feedback=2", "--batch-size": "4",
                  "--report-noises": "2", "--report-samples": "4", "--dmd-regression-pairs": "8",
                  "--report-steps": "1,2", "--dmd-fake-warmup": "1"}  # fmt: skip
TRAINING_IMAGES = 1000


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hypersd demo",
        description="Distil a tiny built-in SD1.5 with the whole Hyper-SD recipe (TSCD 8>4>2>1, score distillation, "
        "human feedback) on the CPU, through the same engine as `python -m hypersd distill`, and report what each "
        "stage buys at 1-8 steps.",
    )
    p.add_argument("--out", type=Path, default=Path("hypersd-demo"), help="output folder (default ./hypersd-demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the training images, the training and the report")
    p.add_argument("--quick", action="store_true", help="a smoke run of a few steps (the numbers mean nothing)")
    p.add_argument("--steps-per-stage", type=int, default=None, help="TSCD steps per stage (default 50)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--teacher", type=Path, default=None, help="teacher folder (default: the shipped one)")
    p.add_argument("--train-teacher", action="store_true", help="rebuild the teacher (--teacher or the shipped folder)")
    p.add_argument("--teacher-steps", type=int, default=10_000, help="denoiser steps for --train-teacher")
    return p


def write_training_images(folder: Path, count: int, seed: int) -> None:
    from PIL import Image

    from .domain import make_dataset, to_uint8

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    images, _labels, captions = make_dataset(count, seed=10_000 + seed)
    for i, (pixels, caption) in enumerate(zip(to_uint8(images), captions, strict=True)):
        Image.fromarray(pixels).save(folder / f"{i:05d}.png")
        (folder / f"{i:05d}.txt").write_text(caption, encoding="utf-8")


def distill_arguments(args: argparse.Namespace, teacher: Path, data: Path) -> list[str]:
    from .classifier import CLASSIFIER_FILE

    settings = dict(DEMO_SETTINGS)
    if args.quick:
        settings.update(QUICK_SETTINGS)
    if args.steps_per_stage:
        settings["--steps-per-stage"] = str(args.steps_per_stage)
    reward = f"demo:{teacher / CLASSIFIER_FILE}"
    prompts = "|".join(report_prompts())
    out = [
        "--model", str(teacher), "--data", str(data), "--out", "demo", "--output-dir", str(args.out / "loras"),
        "--work-dir", str(args.out), "--overwrite", "--stages", DEMO_STAGES, "--reward", reward,
        "--seed", str(args.seed), "--report-prompts", prompts,
    ]  # fmt: skip
    for flag, value in settings.items():
        out += [flag, value]
    return out


def report_prompts() -> list[str]:
    """24 captions that name every shape and every colour: the report's prompts (its Fréchet distance compares
    distributions, so they must cover the domain)."""
    from .domain import SHAPES, Label

    return [Label(i % len(SHAPES), i % 6).caption() for i in range(24)]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from .teacher import TEACHER_DIR

    if args.threads:
        torch.set_num_threads(args.threads)
    teacher = args.teacher or TEACHER_DIR
    if args.train_teacher:
        from .teacher import build_teacher

        build_teacher(teacher, denoiser_steps=args.teacher_steps, log=lambda m: print(m, flush=True))
        return 0
    if not (teacher / "model_index.json").is_file():
        print(f"Hyper-SD: the demo teacher {teacher} is missing; rebuild it with `python -m hypersd demo --train-teacher`",
              file=sys.stderr)  # fmt: skip
        return 1
    started = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "data"
    print(f"Hyper-SD demo{' (quick)' if args.quick else ''}: rendering training images into {data}", flush=True)
    write_training_images(data, 64 if args.quick else TRAINING_IMAGES, args.seed)
    from hypersd.distill import cli as distill_cli

    command = distill_arguments(args, teacher, data)
    print("Running: python -m hypersd distill " + " ".join(command), flush=True)
    status = distill_cli.main(command)
    if status != 0:
        return status
    from .summary import demo_table, write_summary

    report = json.loads((args.out / "demo.run" / "report.json").read_text(encoding="utf-8"))
    wall = time.time() - started
    table = demo_table(report)
    write_summary(args.out, report, table, wall, quick=args.quick)
    print()
    print(table)
    print(f"\nReport: {(args.out / 'demo.run' / 'report.html').resolve()}  ({wall:.0f} s wall)")
    return 0
