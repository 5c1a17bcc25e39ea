"""The Train tab's values as they arrive, checked before anything reads them.

The browser sends what its widgets hold (text, booleans, numbers), but gradio's HTTP API passes any JSON value on,
so a list where a name belongs, NaN for the comparison's steps or a 1 MB data path would otherwise reach a dict
look-up, ``int()`` or ``Path.exists()`` and end as a traceback.  :func:`check_form` turns every such value into one
:class:`~hypersd.train.form.FormError` that names the field; the meaning of the values (choices, ranges of the
engine's settings, the output name) is checked afterwards by :mod:`hypersd.train.form` and the preflight.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from hypersd.train.form import FormError
from hypersd.train.names import path_problem

#: fields holding a path typed by the user
PATH_FIELDS = ("data", "reward")
#: (minimum, maximum, whole number) of the number fields
NUMBER_RANGES = {"normal_steps": (1, 150, True), "normal_cfg": (1.0, 30.0, False)}
LABELS = {
    "data": "Training data", "out": "Output name", "preset": "Training preset", "normal_steps": "Comparison: normal "
    "steps", "normal_cfg": "Comparison: normal CFG", "gpus": "GPUs", "free_vram": "Free the GPU", "reward": "Reward model",
}  # fmt: skip


def label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " ").capitalize())


def _number_problem(name: str, value: Any) -> str | None:
    if value is None:
        return None  # a cleared number box: the default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{label(name)}: expected a number, got {type(value).__name__} {value!r:.40}"
    if not math.isfinite(value):
        return f"{label(name)}: expected a finite number, got {value!r}"
    low, high, whole = NUMBER_RANGES.get(name, (-math.inf, math.inf, False))
    if whole and value != int(value):
        return f"{label(name)}: expected a whole number, got {value!r}"
    if not low <= value <= high:
        return f"{label(name)}: {value:g} is out of range; allowed {low:g}…{high:g}"
    return None


def field_problem(name: str, kind: str, value: Any) -> str | None:
    """What is wrong with ``value`` for a form field of type ``kind`` ("str", "bool" or "float"), or None."""
    if kind == "bool":
        return None if isinstance(value, bool) else f"{label(name)}: expected true or false, got {value!r:.40}"
    if kind == "float":
        return _number_problem(name, value)
    if value is not None and not isinstance(value, str):
        return f"{label(name)}: expected text, got {type(value).__name__} {value!r:.40}"
    return path_problem(value, label(name)) if name in PATH_FIELDS else None


def check_form(form: Any) -> Any:
    """``form`` (a dataclass of str / bool / float fields) unchanged, or FormError naming every bad value."""
    problems = []
    for spec in dataclasses.fields(form):
        kind = spec.type if isinstance(spec.type, str) else spec.type.__name__
        problem = field_problem(spec.name, kind, getattr(form, spec.name))
        if problem:
            problems.append(problem)
    if problems:
        raise FormError("Hyper-SD: fix these settings:\n- " + "\n- ".join(problems))
    return form


def checked_text(value: Any, what: str) -> str:
    """``value`` when it is text (None: ""), else FormError: for a single input outside the form (a run's label)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FormError(f"Hyper-SD: {what}: expected text, got {type(value).__name__} {value!r:.40}")
    return value
