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

if not launch.is_installed("safetensors"):
    launch.run_pip("install safetensors", "safetensors for sd-webui-hyper-sd")

missing = deps.missing_requirements({module: launch.is_installed(module) for module in deps.TRAIN_REQUIREMENTS})
if missing:
    print(f"Hyper-SD: installing {', '.join(missing)} for the Train tab (nothing installed is changed)")
    with tempfile.NamedTemporaryFile("w", suffix="-hypersd-constraints.txt", delete=False) as handle:
        handle.write("\n".join(deps.constraint_lines(deps.installed_distributions())) + "\n")
        constraints = handle.name
    try:
        launch.run_pip(deps.pip_command(missing, constraints), "training packages for sd-webui-hyper-sd")
    except Exception as exc:  # WebUI's installer runner swallows errors: say it ourselves
        print(
            f"Hyper-SD: could not install {', '.join(missing)}: {exc}\n"
            "Hyper-SD: generation works without them; the Train tab needs them (it shows how to install them)."
        )
    finally:
        os.unlink(constraints)
