"""Every gradio handler of ours answers with a visible ``Hyper-SD:`` message, never with gradio's bare "Error".

The handlers check their input and return messages themselves; :func:`guarded` is the net under them, wrapped
around each one where it is wired (the tabs' polling timers take no input from the person and are not wrapped).  A refusal raised as one of :data:`INPUT_ERRORS` (their messages start with
"Hyper-SD:" and say what to do) is shown as it is.  Anything else is a bug: it is logged with its traceback and
shown as "… failed unexpectedly", so the page keeps working and the person sees what happened.

The message goes into one of the handler's outputs (the status line; the others are left as they are), or, with
``message_at=None``, is raised as ``gr.Error`` (a pop-up), for handlers without a place for text.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from hypersd.plan_apply import HyperPlanError
from hypersd.settings import HyperSettingsError
from hypersd.train.controller import JobError
from hypersd.train.form import FormError

log = logging.getLogger("hypersd")

#: Refusals of bad input whose message is meant for the person (they start with "Hyper-SD:").
INPUT_ERRORS: tuple[type[Exception], ...] = (HyperSettingsError, HyperPlanError, FormError, JobError)
NO_CHANGE: dict = {"__type__": "update"}  # gradio 3.41's gr.update(): leave that output as it is
MAX_DETAIL = 300  # characters of an unexpected error's text (an OSError may quote a 1 MB file name)


def unexpected_message(what: str, error: BaseException) -> str:
    detail = str(error)
    if len(detail) > MAX_DETAIL:
        detail = detail[:MAX_DETAIL] + f"… ({len(detail):,} characters)"
    return (
        f"Hyper-SD: {what} failed unexpectedly ({type(error).__name__}: {detail}). The details are in WebUI's "
        "console; please report them."
    )


def _gradio_error(message: str) -> Exception:
    import gradio as gr

    return gr.Error(message)


def guarded(
    handler: Callable[..., Any],
    what: str,
    *,
    outputs: int = 1,
    message_at: int | None = 0,
    render: Callable[[str], Any] = str,
    error: Callable[[str], Exception] = _gradio_error,
) -> Callable[..., Any]:
    """``handler`` with every failure turned into ``render(message)`` at output ``message_at`` (of ``outputs``),
    or raised as ``error(message)`` when ``message_at`` is None."""

    @functools.wraps(handler)
    def run(*args: Any) -> Any:
        try:
            return handler(*args)
        except INPUT_ERRORS as err:
            message = str(err)
        except Exception as err:  # noqa: BLE001 - the net: logged with its traceback and shown, never swallowed
            log.exception("Hyper-SD: %s failed", what)
            message = unexpected_message(what, err)
        if message_at is None:
            raise error(message)
        if outputs == 1:
            return render(message)
        return tuple(render(message) if i == message_at else NO_CHANGE for i in range(outputs))

    return run
