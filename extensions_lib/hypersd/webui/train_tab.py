"""The "Hyper-SD Train" tab: distil a checkpoint into a few-step LoRA without leaving WebUI.

The job runs ``python -m hypersd distill`` in a subprocess (:mod:`hypersd.train.controller`): a crash or an
out-of-memory there never takes WebUI down. The event functions (``on_*``, :func:`poll`) take a host
(:class:`~hypersd.webui.train_host.WebUIHost` or a stand-in) and the controller and return plain values, so they are
tested without a browser; :func:`create_tab` only wires them to gradio 3.41 components.
"""

from __future__ import annotations

import contextlib
import html
import threading
from typing import Any

from hypersd.train.controller import JobError, TrainController, TrainRequest, find_resumable
from hypersd.train.form import (
    BUCKET_CHOICES,
    PRECISION_CHOICES,
    REPORT_CHOICES,
    TRAINING_PRESETS,
    FormError,
)
from hypersd.train.form_check import checked_text
from hypersd.train.tab_form import FORM_FIELDS, TrainForm, compare_options, form_from_values, request_from_form
from hypersd.webui.guard import guarded

TAB_ID = "hypersd_train"
TAB_TITLE = "Hyper-SD Train"
POLL_SECONDS = 1.5
NO_CHANGE: dict = {"__type__": "update"}  # gradio 3.41's gr.update(): leave the component as it is

_controller: TrainController | None = None
_controller_lock = threading.Lock()


def get_controller(host: Any) -> TrainController:
    """The process-wide controller; on first use it re-attaches to a job still running from before a restart."""
    global _controller
    with _controller_lock:
        if _controller is None:
            _controller = TrainController(python=host.python(), available_gpus=host.gpu_count() or None)
            with contextlib.suppress(OSError):
                _controller.adopt(host.work_dir())
        return _controller


def _error_md(text: str) -> str:
    return "\n".join(f"❌ {line}" if i == 0 else line for i, line in enumerate(str(text).splitlines()))


# ------------------------------------------------------------------------------------------------ events


def _checks(controller: TrainController) -> dict[str, Any]:
    """The preflight's checks that run in the training environment (a subprocess): its packages, the reward model."""
    from hypersd.train.preflight import engine_problem, reward_problem

    return {
        "engine_check": lambda: engine_problem(controller.python, controller.pythonpath),
        "reward_check": lambda spec: reward_problem(controller.python, controller.pythonpath, spec),
    }


def on_check(host: Any, controller: TrainController, values: list[Any]) -> tuple[str, list[Any]]:
    """ "Check" button: the whole preflight (data preview, model type, disk, GPUs, packages, reward model)."""
    from hypersd.train.preflight import run_preflight
    from hypersd.train.preview import format_report

    form = form_from_values(values)
    try:
        request = request_from_form(host, form)
    except (FormError, JobError) as err:
        return _error_md(str(err)), []
    check = run_preflight(request, overwrite=form.overwrite, available_gpus=host.gpu_count(), **_checks(controller))
    parts = [check.markdown()]
    thumbnails: list[Any] = []
    if check.report is not None:
        parts.append(format_report(check.report))
        thumbnails = [str(p) for p in check.report.thumbnails]
    return "\n\n".join(parts), thumbnails


def _launch(host: Any, controller: TrainController, request: TrainRequest, form: TrainForm, resume: bool) -> str:
    from hypersd.train.preflight import run_preflight

    if controller.busy:
        return _error_md("Hyper-SD: a training job is already running; cancel it or wait for it to finish.")
    check = run_preflight(
        request,
        resume=resume,
        overwrite=form.overwrite and not resume,
        available_gpus=host.gpu_count(),
        **_checks(controller),
    )
    if not check.ok:
        return check.markdown()
    controller.hooks = host.hooks(free_vram=form.free_vram, compare=compare_options(form))
    try:
        controller.start(request, resume=resume, overwrite=form.overwrite and not resume)
    except JobError as err:
        return _error_md(str(err))
    what = "Resuming" if resume else "Started"
    warnings = "".join(f"\n- ⚠️ {w}" for w in check.warnings)
    return f"{what} **{html.escape(request.out)}** ({check.base}).{warnings}"


def on_start(host: Any, controller: TrainController, values: list[Any]) -> str:
    form = form_from_values(values)
    try:
        request = request_from_form(host, form)
    except (FormError, JobError) as err:
        return _error_md(str(err))
    return _launch(host, controller, request, form, resume=False)


def on_resume(host: Any, controller: TrainController, choice: str, values: list[Any]) -> str:
    """Resume the run picked in the list (its own saved settings); the form gives only the WebUI options."""
    form = form_from_values(values)
    runs = {run.label: run for run in find_resumable(host.work_dir())}
    run = runs.get(choice) or (next(iter(runs.values())) if len(runs) == 1 and not choice else None)
    if run is None:
        return _error_md("Hyper-SD: pick a stopped run to resume (🔄 refreshes the list).")
    return _launch(host, controller, run.request, form, resume=True)


def on_cancel(controller: TrainController) -> str:
    return controller.cancel()


def resumable_choices(host: Any) -> list[str]:
    return [run.label for run in find_resumable(host.work_dir())]


def status_html(status: Any) -> str:
    from hypersd.train.progress import format_progress

    if status.state == "idle":
        return '<div class="hypersd-status">No training job yet. Check the data, then press Train.</div>'
    progress = status.progress
    fraction = 0.0
    if progress is not None and progress.total_steps:
        fraction = min(1.0, progress.step / progress.total_steps)
    line = format_progress(progress) if progress is not None else ""
    result = {"done": "✅", "interrupted": "⏸", "cancelled": "⏸", "error": "❌", "crashed": "❌", "bad-settings": "❌"}
    icon = result.get(status.result or "", "⏳")
    notes = "".join(f"<div>{html.escape(n)}</div>" for n in status.notes)
    detail = f"<div>{html.escape(line)}</div>" if line and line != status.message else ""  # "Done after…" once
    return (
        f'<div class="hypersd-status hypersd-train-status">'
        f'<div class="hypersd-train-bar"><div style="width:{fraction * 100:.1f}%"></div></div>'
        f"<div>{icon} <b>{html.escape(status.out or '')}</b> — {html.escape(status.message)}</div>"
        f"{detail}{notes}</div>"
    )


def poll(controller: TrainController, seen: list[Any] | None, host: Any = None) -> tuple[Any, ...]:
    """Timer tick: status and log; the loss plot, stage samples, comparison grid and the list of stopped runs only
    when they changed (a finished job refreshes the list and preselects its run when it can be resumed)."""
    from PIL import Image

    from hypersd.train.lossplot import render_loss_plot

    status = controller.status()
    seen = list(seen or [None, -1, -1, None, None, None])
    job_key = id(controller.job)
    progress = status.progress
    n_points = len(progress.losses) if progress is not None else 0
    plot = samples = comparison = resume = NO_CHANGE
    if job_key != seen[0] or n_points != seen[1]:
        plot = render_loss_plot(progress.losses, progress.stage_ends) if progress is not None else None
    grids = status.sample_grids
    if job_key != seen[0] or len(grids) != seen[2]:
        samples = [(Image.open(p).convert("RGB"), sample_caption(p.stem)) for p in grids]
    comp = str(status.comparison) if status.comparison else None
    if job_key != seen[0] or comp != seen[3]:
        comparison = Image.open(status.comparison).convert("RGB") if status.comparison else None
    finished = f"{job_key}:{status.result}" if status.state == "finished" else None
    if host is not None and finished is not None and finished != seen[4]:
        runs = find_resumable(host.work_dir())
        mine = next((run.label for run in runs if run.out == status.out), None)
        resume = {"__type__": "update", "choices": [run.label for run in runs], "value": mine}
    report_key = f"{status.report}:{status.report.stat().st_mtime}" if status.report else None
    report = NO_CHANGE
    if job_key != seen[0] or report_key != seen[5]:
        report = report_html(status.report)
    new_seen = [job_key, n_points, len(grids), comp, finished or seen[4], report_key]
    return status_html(status), status.console, plot, samples, comparison, resume, report, new_seen


def sample_caption(stem: str) -> str:
    """``stage-k8`` -> ``stage k=8``; ``stage-dmd`` -> ``stage dmd``."""
    name = stem.removeprefix("stage-")
    return f"stage k={name[1:]}" if name[:1] == "k" and name[1:].isdigit() else f"stage {name}"


def report_html(path: Any) -> str:
    """The quality report inside an iframe (its own page and styles, kept apart from WebUI's), or a placeholder."""
    import pathlib

    if path is None:
        return '<div class="hypersd-status">The quality report appears here when a run ends.</div>'
    try:
        page = pathlib.Path(path).read_text(encoding="utf-8")
    except OSError as err:
        return f'<div class="hypersd-status">The quality report {html.escape(str(path))} cannot be read: {html.escape(str(err))}</div>'
    return (
        f'<div class="hypersd-status">Quality report: {html.escape(str(path))}</div>'
        f'<iframe class="hypersd-report" srcdoc="{html.escape(page, quote=True)}" '
        'style="width:100%;height:900px;border:1px solid #ccc;background:white"></iframe>'
    )


# ------------------------------------------------------------------------------------------------ gradio


def engine_environment(python: str) -> str:
    """Which environment the engine runs in (A1111's or Forge's venv), and what it still lacks there."""
    import importlib.util

    from hypersd import deps
    from hypersd.webui import profile

    found = {module: importlib.util.find_spec(module) is not None for module in deps.TRAIN_REQUIREMENTS}
    return deps.environment_note(profile.current().name, python, deps.missing_requirements(found))


def create_tab():
    """``on_ui_tabs`` callback: [(blocks, title, elem_id)]."""
    import gradio as gr

    from hypersd.webui.train_host import WebUIHost

    host = WebUIHost()
    controller = get_controller(host)
    defaults = TrainForm(checkpoint=host.current_checkpoint() or "")
    with gr.Blocks(analytics_enabled=False) as tab:
        with gr.Row():
            with gr.Column(scale=2):
                gr.Markdown(INTRO)
                gr.Markdown(engine_environment(host.python()), elem_id=f"{TAB_ID}_environment")
                fields = {**_main_inputs(gr, host, defaults), **_advanced_inputs(gr, defaults)}
                fields.update(_job_inputs(gr, defaults))
                buttons = _buttons(gr, host)
            with gr.Column(scale=3):
                view = _outputs(gr, controller)
        _wire(tab, host, [fields[name] for name in FORM_FIELDS], buttons, view)
    return [(tab, TAB_TITLE, TAB_ID)]


INTRO = (
    "Distil a checkpoint into few-step LoRAs with Hyper-SD's recipe: TSCD (one LoRA per step count), optionally "
    "score distillation (one unified 1-8-step LoRA) and human feedback. The job runs in a separate process; "
    "WebUI's model leaves the GPU while it runs and comes back after. A quality report measures every LoRA at the "
    "end and writes its best settings into it."
)


def _main_inputs(gr: Any, host: Any, defaults: TrainForm) -> dict[str, Any]:
    from modules import ui_common

    with gr.Row():
        checkpoint = gr.Dropdown(choices=list(host.checkpoints()), value=defaults.checkpoint,
                                 label="Checkpoint to distill", elem_id=f"{TAB_ID}_checkpoint")  # fmt: skip
        ui_common.create_refresh_button(checkpoint, host.refresh_checkpoints,
                                        lambda: {"choices": list(host.checkpoints())},
                                        f"{TAB_ID}_checkpoint_refresh")  # fmt: skip
    fields = {"checkpoint": checkpoint}
    fields["data"] = gr.Textbox(
        value=defaults.data, label="Training data", elem_id=f"{TAB_ID}_data",
        placeholder="a folder of images with .txt captions, kohya N_name folders, a metadata.jsonl folder, or a "
        ".txt prompt list (one prompt per line)",
    )  # fmt: skip
    fields["out"] = gr.Textbox(value=defaults.out, label="Output name (the LoRA's file name)", elem_id=f"{TAB_ID}_out")
    fields["preset"] = gr.Radio(
        list(TRAINING_PRESETS), value=defaults.preset, label="Training preset", elem_id=f"{TAB_ID}_preset",
        info="Quick test: 100 steps per stage, rank 16 · Standard: 1000, rank 64, adversarial · "
        "High quality: 4000, batch 8",
    )  # fmt: skip
    with gr.Row():
        fields["unified"] = gr.Checkbox(defaults.unified, label="Score distillation: the unified 1-8-step LoRA (dmd)",
                                        elem_id=f"{TAB_ID}_unified")  # fmt: skip
        fields["feedback"] = gr.Checkbox(defaults.feedback, label="Human feedback (needs a reward model)",
                                         elem_id=f"{TAB_ID}_feedback")  # fmt: skip
    fields["reward"] = gr.Textbox(
        value=defaults.reward, label="Reward model (KIND:PATH; local files only)", elem_id=f"{TAB_ID}_reward",
        placeholder="clip:/models/clip-vit-large-patch14 · pickscore:… · aesthetic:CLIP,MLP · "
        "imagereward:ImageReward.pt,med_config.json · hpsv2:HPS_v2.1.pt",
    )  # fmt: skip
    return fields


def _advanced_inputs(gr: Any, d: TrainForm) -> dict[str, Any]:
    def text(name: str, label: str, placeholder: str = "", elem: str = "") -> None:
        fields[name] = gr.Textbox(value=getattr(d, name), label=label, placeholder=placeholder,
                                  elem_id=f"{TAB_ID}_{elem or name}")  # fmt: skip

    fields: dict[str, Any] = {}
    with gr.Accordion("Advanced settings (blank = the preset's value)", open=False):
        with gr.Row():
            text("stages", "TSCD stages", "8,4,2,1")
            text("steps_per_stage", "Steps per stage")
            text("rank", "LoRA rank")
        with gr.Row():
            text("learning_rate", "Learning rate", "1e-4", "lr")
            text("batch_size", "Batch size", elem="batch")
            text("gpus", "GPUs", "1, 2, or 0,1")
        with gr.Row():
            text("cfg_min", "Teacher CFG from", "SD1.5 5 · SDXL 3")
            text("cfg_max", "Teacher CFG to", "SD1.5 15 · SDXL 6")
            text("resolution", "Resolution", "SD1.5 512 · SDXL 1024")
        with gr.Row():
            fields["buckets"] = gr.Radio(list(BUCKET_CHOICES), value=d.buckets, label="Aspect buckets",
                                         elem_id=f"{TAB_ID}_buckets")  # fmt: skip
            fields["precision"] = gr.Radio(list(PRECISION_CHOICES), value=d.precision, label="Precision",
                                           elem_id=f"{TAB_ID}_precision")  # fmt: skip
            fields["gradient_checkpointing"] = gr.Checkbox(d.gradient_checkpointing, elem_id=f"{TAB_ID}_gc",
                                                           label="Gradient checkpointing (less VRAM)")  # fmt: skip
        fields["sample_prompts"] = gr.Textbox(value=d.sample_prompts, lines=2, elem_id=f"{TAB_ID}_sample_prompts",
                                              label="Sample prompts (one per line; blank: the first captions)")  # fmt: skip
        with gr.Row():
            fields["report"] = gr.Radio(list(REPORT_CHOICES), value=d.report, label="Quality report",
                                        info="quick: TCD gamma 0/0.3/1 at CFG 1 · full: also LCM, Euler and "
                                        "CFG 1.5/2 · Auto: quick", elem_id=f"{TAB_ID}_report_level")  # fmt: skip
            text("report_samples", "Report images per LoRA and step count", "64")
        with gr.Row():
            fields["normal_steps"] = gr.Number(d.normal_steps, label="Comparison: normal steps", precision=0,
                                               elem_id=f"{TAB_ID}_normal_steps")  # fmt: skip
            fields["normal_cfg"] = gr.Number(d.normal_cfg, label="Comparison: normal CFG",
                                             elem_id=f"{TAB_ID}_normal_cfg")  # fmt: skip
    return fields


def _job_inputs(gr: Any, d: TrainForm) -> dict[str, Any]:
    return {
        "free_vram": gr.Checkbox(d.free_vram, label="Free the GPU: move WebUI's model to RAM and hold generation "
                                 "requests in WebUI's queue while training", elem_id=f"{TAB_ID}_free_vram"),
        "compare": gr.Checkbox(d.compare, label="When done, make a comparison grid (normal steps vs 1/2/4/8 steps)",
                               elem_id=f"{TAB_ID}_compare"),
        "overwrite": gr.Checkbox(d.overwrite, label="Overwrite an earlier run of the same name",
                                 elem_id=f"{TAB_ID}_overwrite"),
    }  # fmt: skip


def _buttons(gr: Any, host: Any) -> dict[str, Any]:
    from modules import ui_common

    with gr.Row():
        check = gr.Button("Check", elem_id=f"{TAB_ID}_check")
        start = gr.Button("Train", variant="primary", elem_id=f"{TAB_ID}_start")
        cancel = gr.Button("Cancel", variant="stop", elem_id=f"{TAB_ID}_cancel")
    with gr.Row():
        resume_choice = gr.Dropdown(choices=resumable_choices(host), label="Stopped runs",
                                    elem_id=f"{TAB_ID}_resume_choice")  # fmt: skip
        ui_common.create_refresh_button(resume_choice, lambda: None, lambda: {"choices": resumable_choices(host)},
                                        f"{TAB_ID}_resume_refresh")  # fmt: skip
        resume = gr.Button("Resume", elem_id=f"{TAB_ID}_resume")
    message = gr.Markdown(elem_id=f"{TAB_ID}_message")
    thumbs = gr.Gallery(label="Data preview", columns=8, height=120, elem_id=f"{TAB_ID}_thumbs")
    return {"check": check, "start": start, "cancel": cancel, "resume_choice": resume_choice, "resume": resume,
            "message": message, "thumbs": thumbs}  # fmt: skip


def _outputs(gr: Any, controller: TrainController) -> list[Any]:
    """The status column, top to bottom: status, loss plot, samples, comparison, log, report."""
    return [
        gr.HTML(status_html(controller.status()), elem_id=f"{TAB_ID}_status"),
        gr.Image(label="Loss", type="pil", interactive=False, elem_id=f"{TAB_ID}_loss"),
        gr.Gallery(label="Samples per stage (columns: 1, 2, 4, 8 steps)", columns=2, elem_id=f"{TAB_ID}_samples"),
        gr.Image(label="Comparison", type="pil", interactive=False, elem_id=f"{TAB_ID}_comparison"),
        gr.Textbox(label="Log", lines=12, max_lines=12, interactive=False, elem_id=f"{TAB_ID}_log"),
        gr.HTML(report_html(None), elem_id=f"{TAB_ID}_report"),
    ]


def _wire(tab: Any, host: Any, inputs: list[Any], b: dict[str, Any], view: list[Any]) -> None:
    import gradio as gr

    message = [b["message"]]
    b["check"].click(guarded(lambda *v: on_check(host, get_controller(host), list(v)), "Check", outputs=2,
                             render=_error_md), inputs, [b["message"], b["thumbs"]])  # fmt: skip
    b["start"].click(guarded(lambda *v: on_start(host, get_controller(host), list(v)), "Train", render=_error_md),
                     inputs, message)  # fmt: skip
    b["cancel"].click(guarded(lambda: on_cancel(get_controller(host)), "Cancel", render=_error_md), None, message)
    b["resume"].click(guarded(lambda c, *v: on_resume(host, get_controller(host), checked_text(c, "Stopped runs"),
                                                      list(v)), "Resume", render=_error_md),
                      [b["resume_choice"], *inputs], message)  # fmt: skip
    seen = gr.State([None, -1, -1, None, None, None])
    status_box, plot, samples, comparison, log_box, report = view
    tab.load(lambda s: poll(get_controller(host), s, host), [seen],
             [status_box, log_box, plot, samples, comparison, b["resume_choice"], report, seen],
             every=POLL_SECONDS)  # fmt: skip


def register(script_callbacks) -> None:
    script_callbacks.on_ui_tabs(create_tab, name="hypersd train tab")
