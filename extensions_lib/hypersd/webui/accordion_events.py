"""What the accordion's buttons and paste do, as plain functions (``script.py`` wires them to gradio).

They take the values the browser sends and return the values to show, so they are tested without gradio.  A bad
value (gradio's HTTP API passes any JSON on) raises :class:`~hypersd.settings.HyperSettingsError`, which the
handler's :func:`~hypersd.webui.guard.guarded` net shows in the status line.
"""

from __future__ import annotations

import html
import math
from typing import Any

from hypersd import loratags
from hypersd.infotext import read_infotext
from hypersd.plan import fit_size
from hypersd.presets import ALL_PRESET_IDS, NATIVE_SIZE, get_preset, rows_for
from hypersd.settings import FIELD_NAMES, HyperSettings, HyperSettingsError

#: The outputs of a preset button, in order (the prompt box follows when the tab has one, then the status line).
PRESET_OUTPUTS = ("enabled", "preset", "steps", "cfg", "gamma", "weight", "restore_error")
MAX_PROMPT = 1_000_000  # characters: far beyond any prompt; a longer "prompt" is refused, not scanned
SIZE_RANGE = (64, 16384)


def error_status_html(message: str) -> str:
    return f'<div class="hypersd-status hypersd-error">{html.escape(str(message))}</div>'


def preset_values(preset_id: str, prompt: Any = None) -> tuple[HyperSettings, list[Any], str | None]:
    """A preset button: the settings it selects, the values for :data:`PRESET_OUTPUTS`, and the prompt without
    accelerator LoRA tags of other presets (None when the tab has no prompt box to clean)."""
    if prompt is not None and not isinstance(prompt, str):
        raise HyperSettingsError(f"Hyper-SD: the prompt must be text, got {type(prompt).__name__}")
    if prompt is not None and len(prompt) > MAX_PROMPT:
        raise HyperSettingsError(f"Hyper-SD: the prompt is {len(prompt):,} characters long, at most {MAX_PROMPT:,}")
    settings = HyperSettings().with_preset(preset_id)
    ui = dict(zip(FIELD_NAMES, settings.to_ui_values(), strict=True))
    values = [True if name == "enabled" else ui[name] for name in PRESET_OUTPUTS]
    cleaned = None
    if prompt is not None:
        names = [tag.name for tag in loratags.find_hyper_tags(prompt)]
        cleaned = loratags.remove_lora_tags(prompt, names) if names else prompt
    return settings, values, cleaned


def _dimension(name: str, value: Any) -> int:
    low, high = SIZE_RANGE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise HyperSettingsError(f"Hyper-SD: the {name} must be a number of pixels, got {value!r:.40}")
    if not low <= value <= high:
        raise HyperSettingsError(f"Hyper-SD: the {name} {value:g} is out of range; allowed {low}…{high}")
    return int(value)


def native_size(base: str | None, width: Any, height: Any, preset_id: Any = None) -> list[int]:
    """ "Set the native size": the tab's aspect ratio at the selected preset's native pixel count (SDXL-Turbo:
    512² on an SDXL model); the loaded model type's when the preset has no row for it (the plan refuses that)."""
    w, h = _dimension("width", width), _dimension("height", height)
    native = NATIVE_SIZE.get(base or "sd15", NATIVE_SIZE["sd15"])
    if preset_id is not None:
        if preset_id not in ALL_PRESET_IDS:
            raise HyperSettingsError(f"Hyper-SD: unknown preset {preset_id!r:.60}; pick one of the accordion's presets")
        rows = {row.base: row for row in rows_for(preset_id)}
        row = rows.get(base or "sd15") or rows.get("any")  # none for this model type: the status line says so
        native = get_preset(preset_id, base or "sd15").size if row else native
    return list(fit_size(w, h, native))


def pasted_values(params: Any) -> dict[str, Any]:
    """The accordion's values from a pasted infotext (WebUI's parsed dict), by field name; fields left out keep
    their value.

    No entry: off.  A readable entry: every field.  An entry that cannot be restored: on, with ``restore_error``
    set, so that the status line shows the problem and generation is refused with it (WebUI's API passes these
    values to ``process`` too).
    """
    reading = read_infotext(params if isinstance(params, dict) else None)
    if reading.settings is not None:
        return dict(zip(FIELD_NAMES, reading.settings.to_ui_values(), strict=True))
    if reading.problem is not None:
        return {"enabled": True, "restore_error": reading.problem}
    return {"enabled": False, "restore_error": ""}


def speed_words(normal_s: float, hyper_s: float) -> str:
    """ "3.2× faster" or, when the preset's side took longer (e.g. it applied a larger native size), "1.5× slower"."""
    ratio = normal_s / max(hyper_s, 1e-9)
    return f"{ratio:.1f}× faster" if ratio >= 1 else f"{1 / max(ratio, 1e-9):.1f}× slower"
