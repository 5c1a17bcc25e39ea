"""The demo's numbers from the engine's quality report (``report.json``): ratios to the teacher, and the checks
the issues set as bars, each computed from the numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STEPS = ("1", "2", "4", "8")
ROWS = (("1", "TSCD final (k=1 LoRA)"), ("stage", "TSCD stage k=n at n steps"), ("dmd", "unified (score distillation)"),
        ("feedback", "unified + human feedback"))  # fmt: skip


def _metric(report: dict[str, Any], row: str, steps: str, key: str) -> float | None:
    if row == "teacher":
        return report["teacher"].get(steps, {}).get(key)
    name = steps if row == "stage" else row
    lora = report["loras"].get(name)
    return None if lora is None else lora["best"].get(steps, {}).get(key)


def ratios(report: dict[str, Any]) -> dict[str, dict[str, dict[str, float | None]]]:
    """ratios[row][steps]: error ÷ the teacher's own error at those steps, fidelity ÷ the teacher's at 25 steps,
    Fréchet distance and reward as measured."""
    ref = str(report["reference_steps"])
    ref_fid = report["teacher"].get(ref, {}).get("fidelity")
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for row, _label in (("teacher", ""), *ROWS):
        out[row] = {}
        for n in STEPS:
            err, t_err = _metric(report, row, n, "pixel_mse"), _metric(report, "teacher", n, "pixel_mse")
            fid = _metric(report, row, n, "fidelity")
            out[row][n] = {
                "error_ratio": err / t_err if err is not None and t_err else None,
                "fidelity_ratio": fid / ref_fid if fid is not None and ref_fid else None,
                "frechet": _metric(report, row, n, "frechet"),
                "reward": _metric(report, row, n, "reward"),
            }
    return out


def checks(report: dict[str, Any]) -> list[tuple[str, bool]]:
    """The issues' bars, as (statement with the numbers, met?)."""
    r = ratios(report)
    out = []

    def add(text: str, ok: bool | None) -> None:
        if ok is not None:
            out.append((text, ok))

    one, stage = r["1"], r["stage"]
    for n, bar in (("1", 0.66), ("2", 0.82)):
        v = one[n]["error_ratio"]
        add(f"TSCD final at {n} step(s): error {v:.2f}x the teacher's (bar <= {bar})" if v else "", v and v <= bar)
    for n, bar in (("4", 1.0), ("8", 1.5)):
        v = stage[n]["error_ratio"]
        add(f"TSCD stage k={n} at {n} steps: error {v:.2f}x the teacher's (bar <= {bar})" if v else "", v and v <= bar)
    uni, tscd_fd = r["dmd"]["1"]["frechet"], r["1"]["1"]["frechet"]
    if uni is not None and tscd_fd:
        add(
            f"unified 1-step Fréchet distance {uni:.3g} = {uni / tscd_fd:.2f}x TSCD's {tscd_fd:.3g} (bar <= 0.5)",
            uni <= 0.5 * tscd_fd,
        )
    fid = r["dmd"]["1"]["fidelity_ratio"]
    if fid is not None:
        add(f"unified 1-step prompt fidelity {fid:.0%} of the teacher's at 25 steps (bar >= 90%)", fid >= 0.9)
    for n in ("2", "4"):
        u, s = r["dmd"][n], r["stage"][n]
        if u["frechet"] is not None and s["frechet"] is not None and u["fidelity_ratio"] is not None:
            ok = u["frechet"] <= s["frechet"] * 1.05 and u["fidelity_ratio"] >= (s["fidelity_ratio"] or 0) - 0.02
            add(f"unified at {n} steps vs TSCD k={n}: Fréchet {u['frechet']:.3g} vs {s['frechet']:.3g}, fidelity "
                f"{u['fidelity_ratio']:.0%} vs {s['fidelity_ratio']:.0%} (no worse)", ok)  # fmt: skip
    for n in ("1", "2"):
        a, b = r["dmd"][n], r["feedback"][n]
        if a["reward"] is not None and b["reward"] is not None:
            add(
                f"feedback raises the reward at {n} step(s): {a['reward']:.3f} -> {b['reward']:.3f}",
                b["reward"] > a["reward"],
            )
        if a["frechet"] and b["frechet"] is not None:
            grow = b["frechet"] / a["frechet"] - 1
            add(f"feedback's Fréchet distance at {n} step(s) grows by {grow:+.0%} (bar <= +10%)", grow <= 0.10)
    return out


def demo_table(report: dict[str, Any]) -> str:
    r = ratios(report)

    def cell(v: float | None, fmt: str) -> str:
        return f"{format(v, fmt):>9}" if v is not None else f"{'-':>9}"

    head = f"{'':<34}" + "".join(f"{n + (' step' if n == '1' else ' steps'):>9}" for n in STEPS)
    floor = report["teacher"].get(str(report["reference_steps"]), {}).get("frechet")
    fd_title = "Fréchet distance to the teacher's 25-step images from other noises" + (
        f" (the teacher's own: {floor:.3g}, the floor)" if floor is not None else ""
    )
    lines = []
    for key, title, fmt in (("error_ratio", "pixel error ÷ teacher DDIM's at the same steps (< 1: beats it)", ".2f"),
                            ("fidelity_ratio", "prompt fidelity ÷ teacher's at 25 steps", ".0%"),
                            ("frechet", fd_title, ".3g"),
                            ("reward", "demo reward (classifier log-probability)", ".3f")):  # fmt: skip
        lines += ["", title, head]
        for row, label in (("teacher", "teacher DDIM + CFG"), *ROWS):
            if key == "error_ratio" and row == "teacher":
                continue
            lines.append(f"  {label:<32}" + "".join(cell(r[row][n][key], fmt) for n in STEPS))
    lines += ["", "Checks (the issues' bars, computed from the numbers above):"]
    lines += [f"  [{'met' if ok else 'NOT met'}] {text}" for text, ok in checks(report)]
    return "\n".join(lines).lstrip("\n")


def write_summary(out: Path, report: dict[str, Any], table: str, wall: float, quick: bool) -> None:
    results = {"ratios": ratios(report), "checks": [{"text": t, "met": ok} for t, ok in checks(report)],
               "seconds": round(wall, 1), "quick": quick, "report": str(out / "demo.run" / "report.html")}  # fmt: skip
    (out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    (out / "summary.txt").write_text(table + "\n", encoding="utf-8")
