"""After training: the house model at its normal steps next to the distilled LoRA at 1/2/4/8 steps, same seeds.

Made with WebUI's own ``process_images`` (txt2img) on the trained checkpoint, the distilled rows through the
accordion's plan (the "Our distilled LoRA" preset with the LoRA's recommended sampler, CFG and gamma), nothing saved
to the outputs folder. Rows: settings; columns: prompts; each row is labelled with its settings and seconds.
"""

from __future__ import annotations

import contextlib
import pathlib
import time

import numpy as np

from hypersd.settings import HyperSettings
from hypersd.train.controller import Job


def _checkpoint_title(model_path: str) -> str | None:
    from modules import sd_models

    target = pathlib.Path(model_path).resolve()
    for title, info in sd_models.checkpoints_list.items():
        if pathlib.Path(info.filename).resolve() == target:
            return title
    return None


def _prompts(job: Job, count: int) -> list[str]:
    prompts = [p for p in job.request.settings.get("sample_prompts") or [] if p.strip()]
    if not prompts:
        try:
            from hypersd.distill.data import discover_dataset

            prompts = list(dict.fromkeys(discover_dataset(job.request.data).captions))
        except Exception:  # noqa: BLE001 - a prompt is enough to compare
            prompts = []
    return (prompts or ["a photo"])[:count]


def comparison_grid(
    job: Job,
    *,
    normal_steps: int = 25,
    normal_cfg: float = 7.0,
    sampler: str = "DPM++ 2M",
    scheduler: str = "Karras",
    steps: tuple[int, ...] = (1, 2, 4, 8),
    prompts: int = 2,
    seed: int = 1234,
    size: int | None = None,
    lock_held: bool = False,
) -> pathlib.Path:
    from modules import processing, shared
    from modules.call_queue import queue_lock

    from hypersd.report_page import make_grid
    from hypersd.webui.compare_ui import _HyperOnlyScripts

    title = _checkpoint_title(job.request.model)
    if title is None:
        raise RuntimeError(f"{job.request.model} is not in WebUI's checkpoint list; refresh it and try again")
    lora = job.request.out
    texts = _prompts(job, prompts)
    resolution = int(size or job.request.settings.get("resolution") or (1024 if "xl" in title.lower() else 512))

    def run(label: str, settings: HyperSettings | None, n_steps: int, cfg: float) -> tuple[str, np.ndarray]:
        images = []
        started = time.perf_counter()
        for i, prompt in enumerate(texts):
            p = processing.StableDiffusionProcessingTxt2Img(
                sd_model=shared.sd_model, prompt=prompt, negative_prompt="", seed=seed + i, sampler_name=sampler,
                scheduler=scheduler, steps=n_steps, cfg_scale=cfg, width=resolution, height=resolution,
                batch_size=1, n_iter=1, do_not_save_samples=True, do_not_save_grid=True,
                override_settings={"sd_model_checkpoint": title}, override_settings_restore_afterwards=True,
            )  # fmt: skip
            p.scripts = _HyperOnlyScripts(settings)
            p.script_args = []
            result = processing.process_images(p)
            images.append(np.asarray(result.images[0].convert("RGB")))
        seconds = time.perf_counter() - started
        return f"{label} - {seconds / len(texts):.1f} s/image", np.stack(images)

    lock = contextlib.nullcontext() if lock_held else queue_lock
    with lock:
        shared.state.begin(job="hypersd_train_compare")
        try:
            rows = [run(f"{title.split(' [')[0]}: {sampler} {scheduler}, {normal_steps} steps, CFG {normal_cfg:g}",
                        None, normal_steps, normal_cfg)]  # fmt: skip
            for k in steps:
                settings = HyperSettings(enabled=True, preset="distilled", lora=lora, steps=k)
                rows.append(run(f"{lora}: {k} step{'s' if k > 1 else ''}", settings, k, 1.0))
        finally:
            shared.state.end()
    grid = make_grid(rows, scale=max(1, 256 // resolution), label_width=430)
    path = job.files.run_dir / "comparison.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path


__all__ = ["comparison_grid"]
