"""The stage-based trainer against the engine it replaced, side by side in one run (issue: within 5 %, same memory).

The old code path is taken from git (default: commit 4764cbd, the last one with the single-function engine) into a
temporary folder; its own ``benchmarks/train_throughput.py`` times its TSCD step, today's times the TSCD stage's
``train_step``, alternately, each in a fresh process (same tiny UNet, batch, rank, LoRA targets, loss). Prints
samples/s and peak memory of each round and the ratio new / old of the medians.

    python benchmarks/engine_vs_old.py [--rev 4764cbd] [--rounds 3] [extra train_throughput flags]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


def extract(rev: str, dest: pathlib.Path) -> pathlib.Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "extensions_lib", "benchmarks"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def run_one(root: pathlib.Path, flags: list[str], key: str) -> tuple[float, float]:
    env = dict(os.environ, PYTHONPATH=str(root / "extensions_lib"))
    env.setdefault("OMP_NUM_THREADS", "1")
    script = root / "benchmarks" / "train_throughput.py"
    out = subprocess.run([sys.executable, str(script), *flags], capture_output=True, text=True, env=env, check=True)
    record = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("{")))
    return record[f"{key}_samples_per_s"], record[f"peak_mem_gib_{key}"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rev", default="4764cbd")
    p.add_argument("--rounds", type=int, default=3)
    args, extra = p.parse_known_args(argv)
    flags = ["--tiny", "--base", "sd15", "--steps", "20", "--warmup", "3", *extra]
    with tempfile.TemporaryDirectory(prefix="hypersd-old-") as tmp:
        old_root = extract(args.rev, pathlib.Path(tmp))
        old, new = [], []
        for i in range(args.rounds):
            old.append(run_one(old_root, flags, "ours"))
            new.append(run_one(ROOT, flags, "tscd"))
            print(
                f"round {i + 1}: old {old[-1][0]:.2f} samples/s ({old[-1][1]:.2f} GiB), "
                f"new {new[-1][0]:.2f} samples/s ({new[-1][1]:.2f} GiB)",
                flush=True,
            )
    old_sps, new_sps = statistics.median(o[0] for o in old), statistics.median(n[0] for n in new)
    old_mem, new_mem = statistics.median(o[1] for o in old), statistics.median(n[1] for n in new)
    print(
        f"median: old {old_sps:.2f} samples/s, new {new_sps:.2f} samples/s -> new/old {new_sps / old_sps:.3f}; "
        f"peak memory old {old_mem:.2f} GiB, new {new_mem:.2f} GiB -> {new_mem / old_mem:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
