"""The X/Y/Z grid axis "Hyper-SD preset": one click for a comparison grid of presets.

The X/Y/Z script is loaded by WebUI as a module named "xyz_grid.py"; we find it through
``scripts.scripts_data`` and append an ``AxisOption`` (undone on script unload).  Its value is
put on the processing object, where our ``process()`` reads it (TCD gamma already has the
built-in "Eta" axis).
"""

from __future__ import annotations

from typing import Any

from hypersd.webui import profile

AXIS_LABEL = "Hyper-SD preset"
XYZ_ATTR = "hypersd_xyz_preset"


def find_xyz_module(scripts_data) -> Any:
    for data in scripts_data:
        module = getattr(data, "module", None)
        if getattr(module, "__name__", "") == "xyz_grid.py" and hasattr(module, "axis_options"):
            return module
    return None


def apply_preset(p, x, xs):
    known = profile.current().preset_ids
    if x not in known:
        raise RuntimeError(f"Hyper-SD: unknown preset {x!r} on the X/Y/Z axis; known: {', '.join(known)}")
    setattr(p, XYZ_ATTR, x)


def confirm_presets(p, xs):
    known = profile.current().preset_ids
    unknown = [x for x in xs if x not in known]
    if unknown:
        raise RuntimeError(f"Hyper-SD: unknown preset(s) {', '.join(unknown)}; known: {', '.join(known)}")


def register_axis(scripts_data):
    """Append the axis; returns its undo function (a no-op when the X/Y/Z script is absent)."""
    module = find_xyz_module(scripts_data)
    if module is None:
        return lambda: None
    module.axis_options[:] = [o for o in module.axis_options if getattr(o, "label", None) != AXIS_LABEL]
    option = module.AxisOption(
        AXIS_LABEL, str, apply_preset, format_value=module.format_value, confirm=confirm_presets,
        choices=lambda: list(profile.current().preset_ids),
    )  # fmt: skip
    module.axis_options.append(option)

    def undo():
        module.axis_options[:] = [o for o in module.axis_options if o is not option]

    return undo
