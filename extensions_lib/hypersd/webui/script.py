"""The "Hyper-SD" accordion of txt2img and img2img: preset buttons, settings, and their application.

The UI is generated from :data:`hypersd.settings.FIELDS` (the one settings table): ``ui()``
returns exactly those components, in that order, which is the API's positional order.
``process()`` turns the settings into a :class:`hypersd.plan.Plan` and applies it.
"""

from __future__ import annotations

import html
import logging
from typing import Any

import gradio as gr
from modules import scripts, shared
from modules.infotext_utils import PasteField
from modules.ui_components import InputAccordion

from hypersd.infotext import INFOTEXT_KEY
from hypersd.lora_metadata import has_hypersd_metadata
from hypersd.loras import LoraLookup
from hypersd.plan import CurrentValues, make_plan
from hypersd.plan_apply import HyperPlanError, apply_plan
from hypersd.plan_outcomes import PresetNotOnHost, render
from hypersd.presets import PRESET_IDS, SAMPLER_CHOICES, preset_titles, presets_by_group
from hypersd.settings import FIELD_NAMES, FIELDS, HyperSettings, HyperSettingsError
from hypersd.webui import accordion_events, cfg1, host_state, models_panel, profile
from hypersd.webui import unet as hyper_unet
from hypersd.webui.accordion_events import error_status_html
from hypersd.webui.compare_fields import MAIN_FIELDS, LateWiring
from hypersd.webui.guard import guarded
from hypersd.webui.xyz import XYZ_ATTR  # set by the X/Y/Z axis "Hyper-SD preset": overrides the UI preset

log = logging.getLogger("hypersd")


class HyperSDRefused(RuntimeError):
    """Generation refused before sampling (a missing or mismatched LoRA, invalid API args…)."""


def refuse(p: Any, message: str) -> None:
    """Stop this generation with ``message`` before any UNet call.

    WebUI swallows exceptions raised in a script's ``process()`` (it logs them and generates
    anyway), which would silently produce an image without the LoRA.  The sampler's sigma
    function is the first thing called when sampling starts and its exceptions reach the user
    (UI error box, HTTP 500 with the message in the API), so the refusal is raised there.
    """

    def raise_refusal(_steps):
        raise HyperSDRefused(message)

    log.error(message)
    p.sampler_name = "Euler"  # a k-diffusion sampler: the override below is where it takes its sigmas
    p.sampler_noise_scheduler_override = raise_refusal
    if hasattr(p, "comment"):
        p.comment(message)


def settings_from_args(args: tuple) -> HyperSettings:
    return HyperSettings.from_api(list(args))


def current_values(p: Any) -> CurrentValues:
    return CurrentValues.from_processing(
        p,
        img2img_fix_steps=bool(getattr(shared.opts, "img2img_fix_steps", False)),
        **host_state.loaded_model_files(shared),
    )


def lora_lookup() -> LoraLookup:
    """The LoRAs WebUI lists; a missing one is looked for once more in a fresh listing (a file copied in since WebUI
    listed the folder) and, for catalog files, by sha256 under any name (size-matched candidates, hashes cached)."""
    return LoraLookup(
        host_state.available_loras(),
        refresh=lambda: host_state.available_loras(refresh=True),
        recognise=_present_copy,
    )


def _present_copy(entry):
    try:
        return models_panel.get_manager().find_present(entry)
    except Exception:  # noqa: BLE001 - recognition by hash is a bonus; the missing-file refusal still stands
        log.exception("Hyper-SD: could not look for %s by hash", entry.local_filename)
        return None


def plan_for(p: Any, settings: HyperSettings):
    """The job's plan, made once."""
    base = profile.current().model_base(shared.sd_model)
    prompts = list(getattr(p, "all_prompts", None) or [p.prompt])
    hr_prompts = list(getattr(p, "all_hr_prompts", None) or [])
    return make_plan(settings, base, lora_lookup(), prompts, current_values(p), hr_prompts=hr_prompts)


def status_html(plan) -> str:
    lines = [plan.status or "Hyper-SD: off", *plan.warnings, *plan.notes]
    css = "hypersd-error" if plan.errors else "hypersd-ok"
    return f'<div class="hypersd-status {css}">' + "<br>".join(html.escape(x) for x in lines if x) + "</div>"


def _component(spec, is_img2img, elem_id):
    """A gradio input for one settings field (the accordion's own checkbox is made separately)."""
    if spec.internal:  # set by paste, shown through the status line; never saved as a UI default
        box = gr.Textbox(value=spec.default, visible=False, elem_id=elem_id)
        box.do_not_save_to_config = True
        return box
    if spec.choices is not None:
        if spec.name == "preset":
            info = "the buttons above set this; see the README's preset table"
            return gr.Dropdown(
                label=spec.label, choices=list(profile.current().preset_ids), value=spec.default, elem_id=elem_id,
                info=info,
            )  # fmt: skip
        if spec.name == "sampler":
            info = "; ".join(f"{c.id}: {c.title}" for c in SAMPLER_CHOICES)
            return gr.Radio(
                label=spec.label, choices=list(spec.choices), value=spec.default, elem_id=elem_id, info=info
            )
        return gr.Dropdown(label=spec.label, choices=list(spec.choices), value=spec.default, elem_id=elem_id)
    if spec.kind is bool:
        return gr.Checkbox(label=spec.label, value=spec.default, elem_id=elem_id, info=spec.help or None)
    if spec.kind in (int, float):
        value = spec.auto if spec.default is None and spec.auto is not None else spec.default
        lo = spec.auto if spec.auto is not None else spec.minimum
        step = 1 if spec.kind is int else (0.01 if spec.maximum <= 2 else 0.5)
        return gr.Slider(label=spec.label, minimum=lo, maximum=spec.maximum, step=step, value=value, elem_id=elem_id)
    if spec.name == "lora":
        # LoRAs whose metadata carries hypersd_* recommendations (our distilled ones); any name may be typed
        choices = ["", *distilled_lora_names()]
        return gr.Dropdown(
            label=spec.label, choices=choices, value=spec.default, elem_id=elem_id, allow_custom_value=True,
            info="for the 'Our distilled LoRA' preset",
        )  # fmt: skip
    return gr.Textbox(label=spec.label, value=spec.default, elem_id=elem_id)


class HyperSDScript(scripts.Script):
    section = "accordions"
    create_group = False

    def __init__(self):
        super().__init__()
        self.late = LateWiring()  # the tab's prompt, size, sampler, steps, CFG and seed boxes, as WebUI builds them

    def title(self):
        return "Hyper-SD"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def after_component(self, component, **kwargs):
        # The preset buttons strip stale accelerator tags from the prompt, "Set the native size" sets the size, and
        # Compare renders the tab's normal settings beside the preset.
        elem_id = kwargs.get("elem_id") or ""
        tab = "img2img" if self.is_img2img else "txt2img"
        name = elem_id[len(tab) + 1 :] if elem_id.startswith(f"{tab}_") else None
        if name in MAIN_FIELDS:
            self.late.built(name, component)

    def ui(self, is_img2img):
        defaults = HyperSettings().to_ui_values()
        components = []
        with InputAccordion(False, label="Hyper-SD", elem_id=self.elem_id("enabled")) as enabled:
            components.append(enabled)
            status = gr.HTML(value=status_html_idle(), elem_id=self.elem_id("status"))
            buttons = []
            runnable = profile.current()
            titles = preset_titles(runnable.preset_ids)
            for group, ids in presets_by_group(runnable.bases).items():
                ids = [i for i in ids if i in titles]
                if not ids:
                    continue
                with gr.Row(elem_classes="hypersd-preset-row"):
                    gr.HTML(f'<span class="hypersd-group">{html.escape(group)}</span>')
                    for preset_id in ids:
                        btn = gr.Button(
                            titles[preset_id], size="sm", elem_id=self.elem_id(f"preset_{preset_id}"),
                            elem_classes="hypersd-preset",
                        )  # fmt: skip
                        buttons.append((btn, preset_id))
            inputs = {}
            with gr.Row():
                for spec in FIELDS[1:3]:
                    inputs[spec.name] = _component(spec, is_img2img, self.elem_id(spec.name))
            with gr.Row():
                for spec in FIELDS[3:7]:
                    inputs[spec.name] = _component(spec, is_img2img, self.elem_id(spec.name))
            with gr.Row():
                for spec in FIELDS[7:]:
                    inputs[spec.name] = _component(spec, is_img2img, self.elem_id(spec.name))
                fix_size = gr.Button("Set the native size", size="sm", visible=False, elem_id=self.elem_id("fix_size"))
            compare_parts = None
            if not is_img2img:
                with gr.Row():
                    compare = gr.Button("Compare with normal settings", size="sm", elem_id=self.elem_id("compare"))
                compare_info = gr.HTML(elem_id=self.elem_id("compare_info"))
                compare_gallery = gr.Gallery(
                    label="Hyper-SD vs normal", columns=2, height="auto", elem_id=self.elem_id("compare_gallery")
                )
                compare_parts = (compare, compare_info, compare_gallery)
        components.extend(inputs[spec.name] for spec in FIELDS[1:])
        for component, spec, value in zip(components, FIELDS, defaults, strict=True):
            # float fields keep float defaults: WebUI's API casts pasted infotext values to type(component.value)
            component.value = float(value) if spec.kind is float and value is not None else value

        self._wire_buttons(buttons, components, status)
        if compare_parts is not None:
            self.late.when_built(MAIN_FIELDS, lambda *main: self._wire_compare(components, *compare_parts, main))
        self._wire_status(components, status)
        preset_box = components[FIELD_NAMES.index("preset")]
        self.late.when_built(("width", "height"), lambda w, h: self._wire_native_size(fix_size, preset_box, w, h))
        self.infotext_fields = [
            PasteField(comp, _paste_reader(spec.name, comp), api=None)
            for comp, spec in zip(components, FIELDS, strict=True)
        ]
        self.paste_field_names = []
        return components

    def _wire_buttons(self, buttons, components, status):
        by_name = dict(zip(FIELD_NAMES, components, strict=True))
        outputs = [by_name[n] for n in accordion_events.PRESET_OUTPUTS]
        extra_in = [self.late.found["prompt"]] if "prompt" in self.late.found else []
        outputs += [*extra_in, status]

        for btn, preset_id in buttons:

            def click(*values, preset_id=preset_id):
                prompt = (values[0] or "") if extra_in else None
                settings, out, cleaned = accordion_events.preset_values(preset_id, prompt)
                return [*out, *([cleaned] if extra_in else []), preview_status(settings)]

            guard = guarded(click, f"the {preset_id} button", outputs=len(outputs), message_at=len(outputs) - 1,
                            render=error_status_html)  # fmt: skip
            btn.click(fn=guard, inputs=extra_in, outputs=outputs, show_progress=False)

    def _wire_status(self, components, status):
        def refresh(*values):
            return preview_status(settings_from_args(values))

        refresh = guarded(refresh, "the status line", render=error_status_html)
        for component in components:
            component.change(fn=refresh, inputs=components, outputs=[status], show_progress=False)

    @staticmethod
    def _wire_native_size(button, preset_box, width, height):
        def native_size(w, h, preset_id):
            return accordion_events.native_size(profile.current().model_base(shared.sd_model), w, h, preset_id)

        button.click(fn=guarded(native_size, "Set the native size", message_at=None),
                     inputs=[width, height, preset_box], outputs=[width, height])  # fmt: skip
        button.visible = True

    @staticmethod
    def _wire_compare(components, button, info, gallery, main):
        """Compare reads the accordion and every box of :data:`MAIN_FIELDS` (wired once they all exist)."""
        inputs, names = list(components) + list(main), MAIN_FIELDS

        def compare(*values):
            from hypersd.webui.compare_ui import MainValues, run_compare

            ours, main = values[: len(components)], values[len(components) :]
            settings = settings_from_args(ours)
            if settings.restore_error:
                raise HyperSettingsError(settings.restore_error)
            return run_compare(settings, MainValues(**dict(zip(names, main, strict=True))))

        guard = guarded(compare, "Compare", outputs=2, message_at=1, render=error_status_html)
        button.click(fn=guard, inputs=inputs, outputs=[gallery, info])

    # ------------------------------------------------------------------ generation

    def before_process(self, p, *args):
        # The 1-step UNet is selected as an override setting, which WebUI reads right here (process_images) and
        # gives back when the job ends, failed or not; process() refuses the job when the UNet cannot run.
        try:
            settings = job_settings(p, args)
        except HyperSettingsError:
            return  # process() refuses with the message
        unet_preset = settings.enabled and not settings.restore_error and settings.preset == hyper_unet.PRESET_ID
        unet_preset = unet_preset and hyper_unet.PRESET_ID not in profile.current().hidden_presets
        if unet_preset and hyper_unet.preset_problem(shared.sd_model, models_panel.get_manager()) is None:
            hyper_unet.select_for(p, shared.opts)

    def process(self, p, *args):
        try:
            settings = job_settings(p, args)
        except HyperSettingsError as error:
            refuse(p, str(error))
            return
        if not settings.enabled:
            return
        if settings.restore_error:
            refuse(p, settings.restore_error)
            return
        host = profile.current()
        if settings.preset in host.hidden_presets:
            refuse(p, render(PresetNotOnHost(settings.preset, host.name, host.preset_ids)))
            return
        if settings.preset == hyper_unet.PRESET_ID:
            problem = hyper_unet.preset_problem(shared.sd_model, models_panel.get_manager())
            if problem:
                refuse(p, problem)
                return
        plan = plan_for(p, settings)
        if plan.errors:
            refuse(p, "\n".join(plan.errors))
            return
        try:
            changes = apply_plan(p, plan)
        except HyperPlanError as error:
            refuse(p, str(error))
            return
        for warning in plan.warnings:
            log.warning(warning)
            if hasattr(p, "comment"):
                p.comment(warning)
        p.hypersd_plan = plan
        log.info("%s (%s)", plan.status, "; ".join(changes) or "nothing to change")

    def postprocess(self, p, processed, *args):
        hyper_unet.restore_after(p, shared.opts)

    def process_before_every_sampling(self, p, *args, **kwargs):
        plan = getattr(p, "hypersd_plan", None)
        if plan is not None and plan.enabled and plan.ok and profile.current().cfg1_patch:
            cfg1.install(p, shared.opts)  # Forge skips the uncond pass at CFG 1 itself


def job_settings(p, args) -> HyperSettings:
    """The accordion's settings for this job: the script args, the X/Y/Z preset axis, an explicit eta."""
    settings = settings_from_args(args)
    xyz_preset = getattr(p, XYZ_ATTR, None)
    if xyz_preset:
        settings = settings.with_preset(xyz_preset)
    if settings.enabled and settings.gamma is None and getattr(p, "eta", None) is not None:
        # An explicit eta (the API's "eta", the X/Y/Z "Eta" axis) is TCD's gamma: it wins over the
        # preset's recommendation, and the infotext records it so that paste restores it.
        settings = settings.replace(gamma=float(p.eta))
    return settings


def distilled_lora_names() -> list[str]:
    try:
        loras = host_state.available_loras()
    except Exception:  # noqa: BLE001 - the Lora extension may be disabled: the field then takes typed names
        return []
    return sorted(name for name, info in loras.items() if has_hypersd_metadata(info.metadata))


def status_html_idle() -> str:
    return '<div class="hypersd-status">Hyper-SD: turn on and pick a preset; nothing changes while it is off.</div>'


def preview_status(settings: HyperSettings) -> str:
    """The status line for the current UI values, against the loaded model and Lora folder."""
    if not settings.enabled:
        return status_html_idle()
    if settings.restore_error:
        return error_status_html(settings.restore_error)
    try:
        base = profile.current().model_base(shared.sd_model)
    except Exception:  # noqa: BLE001 - no model loaded yet
        base = None
    plan = make_plan(settings, base, host_state.available_loras(), [""], CurrentValues())
    return status_html(plan)


def _paste_reader(name: str, component: Any = None):
    spec = next(f for f in FIELDS if f.name == name)

    def read(params: dict):
        values = accordion_events.pasted_values(params)
        if name not in values:
            return gr.update()  # left as it is (WebUI's API skips it too)
        if spec.kind is float and component is not None and isinstance(component.value, int):
            # WebUI's API casts a pasted value to type(component.value), read after this call; a default
            # restored from ui-config.json as an int (-1) would turn gamma 0.7 into 0.
            component.value = float(component.value)
        return values[name]

    return read


__all__ = ["HyperSDScript", "INFOTEXT_KEY", "PRESET_IDS"]
