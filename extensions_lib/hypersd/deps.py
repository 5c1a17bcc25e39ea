"""What ``install.py`` adds to WebUI's venv for the Train tab, without changing anything already installed.

The training engine needs diffusers and peft (accelerate and transformers come with WebUI). WebUI 1.10 pins
transformers 4.30.2 and accelerate 0.21.0; the newest releases that still import with those are diffusers 0.36
(its model classes; its pipelines need a newer transformers, which training does not use) and peft 0.13 (0.14
needs a newer transformers, 0.15+ a newer accelerate). Every installed distribution is passed to pip as a
constraint at its current version, so pip either fits around WebUI or fails; it never upgrades WebUI's pins.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

#: import name → pip requirement for the training engine (added only when the import name is missing)
TRAIN_REQUIREMENTS: dict[str, str] = {
    "diffusers": "diffusers>=0.31,<0.37",
    "peft": "peft>=0.13,<0.14",
    "accelerate": "accelerate>=0.21",
}


def normalise(name: str) -> str:
    """PEP 503 name normalisation: "Pillow" == "pillow", "huggingface_hub" == "huggingface-hub"."""
    return re.sub(r"[-_.]+", "-", name).lower()


def missing_requirements(is_installed: Mapping[str, bool]) -> list[str]:
    """Requirements whose import name is not installed, in a stable order."""
    return [req for module, req in TRAIN_REQUIREMENTS.items() if not is_installed.get(module, False)]


def constraint_lines(installed: Mapping[str, str]) -> list[str]:
    """``name==version`` for every installed distribution: pip may add packages but change none of these."""
    pins: dict[str, str] = {}
    for name, version in installed.items():
        if version:
            pins.setdefault(normalise(name), version)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def installed_distributions() -> dict[str, str]:
    """name → version of every distribution this interpreter sees (stdlib importlib.metadata)."""
    from importlib import metadata

    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            found.setdefault(normalise(name), dist.version)
    return found


def environment_note(host_name: str, python: str, missing: list[str]) -> str:
    """The Train tab's line saying where the engine runs: the host's own venv, with what it still lacks."""
    where = f"The engine runs in a subprocess with {host_name}'s own Python environment (`{python}`)"
    if not missing:
        return f"{where}; its packages are there, and the extension's installer changed none of the host's."
    return (
        f"{where}, which lacks {', '.join(missing)}: restart {host_name} once so that the extension's install.py "
        "adds them (pinned around every installed package, so torch, gradio, pydantic, transformers and diffusers "
        "stay as they are), or install them by hand."
    )


def pip_command(requirements: list[str], constraints_file: str) -> str:
    """The arguments for WebUI's ``launch.run_pip`` (it runs them through the shell)."""
    quoted = " ".join(f'"{req}"' for req in requirements)
    return f'install {quoted} -c "{constraints_file}"'
