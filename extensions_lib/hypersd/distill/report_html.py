"""The quality report's page: a summary table, plots of error / fidelity / Fréchet distance against steps, a sample
grid (teacher vs every LoRA at its best settings, same noises and prompts), the recommended settings and the cost."""

from __future__ import annotations

import html
import pathlib
from typing import Any

import numpy as np
import torch

from hypersd.report_page import html_page, html_table, make_grid, png_base64, svg_line_chart

from .export import atomic_write

GRID_COLUMNS = 8


def _uint8(images: torch.Tensor) -> np.ndarray:
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def summary_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per (LoRA, steps): its best setting and every number, and the teacher's own few-step DDIM."""

    def fmt(value: Any, digits: int = 4) -> str:
        return "-" if value is None else f"{value:.{digits}g}"

    rows = []
    teacher = report["teacher"]
    ref_fid = teacher.get(report["reference_steps"], {}).get("fidelity")
    for n, r in teacher.items():
        rows.append([f"teacher DDIM + CFG {report['teacher_cfg']:g}", n, "Euler (= DDIM)", fmt(r["latent_mse"]),
                     fmt(r["pixel_mse"]), "1", fmt(r.get("fidelity"), 3), fmt(r.get("frechet"), 4)])  # fmt: skip
    for lora in report["loras"].values():
        for n, r in lora["best"].items():
            t_err = teacher.get(n, {}).get("pixel_mse")
            ratio = r["pixel_mse"] / t_err if t_err else None
            setting = (
                f"{r['sampler']}" + (f" g{r['gamma']:g}" if r.get("gamma") is not None else "") + f", CFG {r['cfg']:g}"
            )
            rows.append([lora["label"], n, setting, fmt(r["latent_mse"]), fmt(r["pixel_mse"]), fmt(ratio, 3),
                         fmt(r.get("fidelity"), 3) + (f" ({r['fidelity'] / ref_fid:.0%})" if ref_fid and r.get("fidelity") is not None else ""),
                         fmt(r.get("frechet"), 4)])  # fmt: skip
    return rows


def plots(report: dict[str, Any]) -> list[str]:
    charts = []
    steps_of = sorted(n for n in report["teacher"] if n != report["reference_steps"])
    for key, title, log_y in (
        ("pixel_mse", "pixel MSE to the teacher's 25-step result (lower is better)", True),
        ("fidelity", "prompt fidelity (higher is better)", False),
        ("frechet", "Fréchet distance to the teacher's 25-step images from other noises (lower is better)", True),
    ):
        series: dict[str, list[tuple[float, float]]] = {}
        teacher = [(n, report["teacher"][n][key]) for n in steps_of if key in report["teacher"].get(n, {})]
        if teacher:
            series["teacher DDIM + CFG"] = teacher
        for lora in report["loras"].values():
            pts = [(n, lora["best"][n][key]) for n in steps_of if key in lora["best"].get(n, {})]
            if pts:
                series[lora["label"]] = pts
        if len(series) > 1 or (series and key != "fidelity"):
            charts.append(
                svg_line_chart(
                    series, title=title, x_label="steps", log_y=log_y, log_x=True, dashed=["teacher DDIM + CFG"]
                )
            )
    return charts


def grid_image(report: dict[str, Any], teacher_line: dict, loras: dict, prompts: list[str]):
    ref_steps = report["reference_steps"]
    rows = [(f"teacher {ref_steps} steps", _uint8(teacher_line[ref_steps]["images"][:GRID_COLUMNS]))]
    rows += [
        (f"teacher {n} step{'s' * (n > 1)}", _uint8(r["images"][:GRID_COLUMNS]))
        for n, r in teacher_line.items()
        if n != ref_steps
    ]
    for lora in loras.values():
        for n, r in lora["best"].items():
            rows.append((f"{lora['label']}, {n} step{'s' * (n > 1)}", _uint8(r["images"][:GRID_COLUMNS])))
    return make_grid(rows, scale=max(1, 64 // rows[0][1].shape[1]), header=prompts[:GRID_COLUMNS])


def write_report(
    path: pathlib.Path, report: dict[str, Any], teacher_line: dict, loras: dict, prompts: list[str]
) -> None:
    grid = grid_image(report, teacher_line, loras, prompts)
    atomic_write(path.with_name("report-grid.png"), lambda tmp: grid.save(tmp, format="PNG"))
    table = html_table(
        ["LoRA", "steps", "best setting", "latent MSE", "pixel MSE", "÷ teacher at same steps", "fidelity", "Fréchet"],
        summary_rows(report),
    )
    recommended = html_table(
        ["LoRA", "file", "steps", "sampler", "schedule", "gamma", "CFG"],
        [[v["label"], pathlib.Path(v["file"]).name, v["recommended"]["steps"], v["recommended"]["sampler"],
          v["recommended"]["scheduler"], v["recommended"].get("gamma", "-"), v["recommended"]["cfg"]]
         for v in report["loras"].values()],
    )  # fmt: skip
    cost = report["cost"]
    notes = (
        f"Level {report['level']!r}: each LoRA's sampler/gamma/CFG chosen on {report['noises']} noises, then measured on "
        f"{report['samples']} noises at the best setting. References: the teacher's {report['reference_steps']}-step "
        f"DDIM at CFG {report['teacher_cfg']:g} from the same noises and prompts. Scorer: {report['scorer'] or 'none'}. "
        f"Cost: {cost['unet_calls']} UNet calls ({cost['unet_rows']} images through the UNet), {cost['seconds']} s."
    )
    sections = [
        ("Results at the best setting per step count", table),
        ("Written into the LoRAs' metadata (the accordion's 'Our distilled LoRA' preset uses these)", recommended),
        ("Plots", "".join(plots(report))),
        (
            "Samples (columns: the same noise and prompt)",
            f'<img src="data:image/png;base64,{png_base64(grid)}" alt="samples">',
        ),
        ("How this was measured", f"<p>{html.escape(notes)}</p>"),
    ]
    if report.get("warnings"):
        sections.insert(0, ("Warnings", "".join(f"<p>{html.escape(w)}</p>" for w in report["warnings"])))
    page = html_page("Hyper-SD distillation: quality report", sections)
    atomic_write(path, lambda tmp: pathlib.Path(tmp).write_text(page, encoding="utf-8"))
