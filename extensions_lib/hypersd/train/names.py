"""Names and paths typed into the Train tab, checked before anything touches the file system.

An output name becomes several file names (``<name>.safetensors``, ``<name>-8step.safetensors``,
``<name>.run/``, ``<name>.config.json`` …, see :mod:`hypersd.train.layout` and the job controller), so it must be a
plain file name on every platform and short enough that the longest of them still fits the 255-byte limit of
common file systems.  A path (the training data) must be something the operating system can be asked about at all:
a 1 MB string or one holding a NUL byte makes ``Path.exists()`` raise instead of answering.
"""

from __future__ import annotations

import re
import unicodedata

#: At most this many characters (and twice as many UTF-8 bytes) in an output name: the longest file made from it
#: (``<name>-<k>step.safetensors.hypersd-part`` and the like) stays far below 255 bytes.
MAX_OUTPUT_NAME = 100
MAX_OUTPUT_NAME_BYTES = 2 * MAX_OUTPUT_NAME
#: Linux's PATH_MAX and NAME_MAX; Windows and macOS allow less, never more.
MAX_PATH_BYTES = 4096
MAX_PATH_PART_BYTES = 255

_FORBIDDEN = set('/\\:*?"<>|')
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)
_HINT = "use letters, digits, - and _"


def _control_characters(text: str) -> list[str]:
    """The control characters (line breaks, NUL, …) in ``text``, as they would be typed in Python."""
    return sorted({repr(c) for c in text if unicodedata.category(c) in ("Cc", "Cf")})


def output_name_problem(name: object) -> str | None:
    """None when ``name`` can name a LoRA and its run folder; else what is wrong and what to do."""
    if name is not None and not isinstance(name, str):
        return f"Output name: expected text, got {type(name).__name__}"
    name = (name or "").strip()
    if not name:
        return "Output name: give the LoRA a name (it becomes <name>.safetensors in the Lora folder)"
    size = len(name.encode("utf-8"))
    if len(name) > MAX_OUTPUT_NAME or size > MAX_OUTPUT_NAME_BYTES:
        return (
            f"Output name: {len(name):,} characters ({size:,} bytes) is too long; at most {MAX_OUTPUT_NAME} "
            f"characters and {MAX_OUTPUT_NAME_BYTES} bytes, e.g. house-hyper"
        )
    control = _control_characters(name)
    if control:
        return f"Output name: holds control characters ({', '.join(control)}); {_HINT}"
    if any(c in _FORBIDDEN for c in name) or name.startswith(".") or name.endswith((".", " ")):
        return f"Output name: {name!r} cannot be a file name; {_HINT}"
    if _WINDOWS_RESERVED.match(name):
        return f"Output name: {name!r} is a reserved device name on Windows; choose another, e.g. {name}-hyper"
    if name.lower().endswith(".safetensors"):
        return "Output name: leave out .safetensors"
    return None


def path_problem(text: object, label: str) -> str | None:
    """None when ``text`` (blank, or a path typed by the user) can be looked up; else what is wrong.

    Only the form of the text is checked here; whether the path exists is the preflight's business.
    """
    if text is None:
        return None
    if not isinstance(text, str):
        return f"{label}: expected a path as text, got {type(text).__name__}"
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_PATH_BYTES:
        return f"{label}: the path is {size:,} bytes long; paths have at most {MAX_PATH_BYTES:,}"
    control = _control_characters(text)
    if control:
        return f"{label}: the path holds control characters ({', '.join(control)}); paste it again on one line"
    for part in re.split(r"[/\\]", text):
        if len(part.encode("utf-8", "surrogatepass")) > MAX_PATH_PART_BYTES:
            return (
                f"{label}: a folder or file name in the path is longer than {MAX_PATH_PART_BYTES} bytes "
                f"({part[:40]}…); check the path"
            )
    return None
