"""Run the full `python -m hypersd demo` and print its ratio table and the issues' checks, from one run.

    python benchmarks/demo_table.py [--out DIR] [--seeds 0 1] [extra demo flags...]

The numbers are the engine's quality report (report.json) turned into ratios by ``hypersd.demo.summary``: each
LoRA's pixel error ÷ the teacher's own DDIM error at the same steps, prompt fidelity ÷ the teacher's at 25
steps, the Fréchet distance to the teacher's 25-step images and the demo reward. Exit status 1 when a check is
not met (the wall time is printed beside it: the demo's bar is 5 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from hypersd.demo import main as demo_main
from hypersd.demo.summary import checks, demo_table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    args, extra = p.parse_known_args(argv)
    root = args.out or Path(tempfile.mkdtemp(prefix="hypersd-demo-bench-"))
    missed = 0
    for seed in args.seeds:
        out = root / f"seed{seed}"
        if demo_main(["--out", str(out), "--seed", str(seed), *extra]) != 0:
            return 2
        report = json.loads((out / "demo.run" / "report.json").read_text(encoding="utf-8"))
        seconds = json.loads((out / "results.json").read_text(encoding="utf-8"))["seconds"]
        print(f"\n=== seed {seed}: {seconds:.0f} s wall (bar: 300 s)\n{demo_table(report)}")
        missed += sum(not ok for _, ok in checks(report)) + (seconds > 300)
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
