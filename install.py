"""Run by WebUI at start-up in its own venv: install only what is missing, never change what is installed.

Inference needs nothing beyond WebUI (torch, numpy, safetensors, pillow, k-diffusion). The Train tab's engine needs
diffusers and peft (hypersd.deps says which versions and why). Every installed package is handed to pip as a
constraint at its current version, so WebUI's pins (torch, transformers, gradio, fastapi, accelerate, ...) stay as
they are. Quiet when nothing is missing; a failure here never stops WebUI: the Train tab then says what to do.
"""

import os
import sys
import tempfile

import launch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "extensions_lib"))

from hypersd import deps  # noqa: E402


def install(requirements: list[str], what: str) -> None:
    """pip-install ``requirements`` with every installed package pinned as a constraint; report failures."""
    print(f"Hyper-SD: installing {', '.join(requirements)} for {what} (nothing installed is changed)")
    with tempfile.NamedTemporaryFile("w", suffix="-hypersd-constraints.txt", delete=False) as handle:
        handle.write("\n".join(deps.constraint_lines(deps.installed_distributions())) + "\n")
        constraints = handle.name
    try:
        launch.run_pip(deps.pip_command(requirements, constraints), f"{', '.join(requirements)} for sd-webui-hyper-sd")
    except Exception as exc:  # WebUI's installer runner swallows errors: say it ourselves
        print(
            f"Hyper-SD: could not install {', '.join(requirements)}: {exc}\n"
            f"Hyper-SD: {what} needs them: install them into WebUI's venv by hand."
        )
    finally:
        os.unlink(constraints)


if not launch.is_installed("safetensors"):
    install(["safetensors"], "Hyper-SD")

missing = deps.missing_requirements({module: launch.is_installed(module) for module in deps.TRAIN_REQUIREMENTS})
if missing:
    install(missing, "the Hyper-SD Train tab (generation works without them)")
