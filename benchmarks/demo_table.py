"""Run the full `python -m hypersd demo` and print its table with the ratios that matter, side by side.

    python benchmarks/demo_table.py [--out DIR] [--seeds 0 1] [extra demo flags...]

Checks what the quick test cannot assert robustly: that the distilled students beat the teacher at 1 and
2 steps (exit status 1 if the TSCD student does not), and prints how TSCD compares with one-shot CD at each step count.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from hypersd.demo import main as demo_main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None, help="keep the reports here (default: a temporary folder)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    args, extra = p.parse_known_args(argv)
    root = args.out or Path(tempfile.mkdtemp(prefix="hypersd-demo-bench-"))
    failures = 0
    summary = []
    for seed in args.seeds:
        out = root / f"seed{seed}"
        start = time.time()
        demo_main(["--out", str(out), "--seed", str(seed), *extra])
        wall = time.time() - start
        res = json.loads((out / "results.json").read_text())
        err = {m: {int(n): v for n, v in rows.items()} for m, rows in res["errors"].items()}
        print(f"\n=== seed {seed}: {wall:.0f} s wall ===")
        print(
            f"{'steps':>5} {'teacher':>9} {'TSCD':>9} {'stage k=n':>9} {'one-shot':>9} {'teacher/TSCD':>13} {'teacher/1shot':>14} {'1shot/TSCD':>11}"
        )
        for n in (1, 2, 4, 8):
            t, s, g, o = err["teacher"][n], err["tscd"][n], err["tscd_stage"][n], err["oneshot"][n]
            print(f"{n:>5} {t:>9.4f} {s:>9.4f} {g:>9.4f} {o:>9.4f} {t / s:>13.2f} {t / o:>14.2f} {o / s:>11.2f}")
        for n in (1, 2):
            for key, name in (("tscd", "TSCD"), ("oneshot", "one-shot CD")):
                ok = err[key][n] < err["teacher"][n]
                counted = key == "tscd"  # the product; one-shot CD is the baseline and only reported
                failures += counted and not ok
                note = "" if counted else " (baseline, not counted)"
                summary.append(
                    f"seed {seed}: {name} beats the teacher at {n} step(s): {'PASS' if ok else 'FAIL'}{note}"
                )
    print("\n" + "\n".join(summary))
    print(f"reports under {root}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
