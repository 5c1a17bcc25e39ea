"""Run by WebUI at start-up in its own venv: install only what is missing, never upgrade WebUI's pins.

The inference side needs nothing beyond what WebUI already has (torch, numpy, safetensors,
pillow, k-diffusion).  This stays quiet when nothing is missing.
"""

import launch

NEEDED = {
    # import name: pip requirement (only packages WebUI does not pin itself)
    "safetensors": "safetensors",
}

for module, requirement in NEEDED.items():
    if not launch.is_installed(module):
        print(f"Hyper-SD: installing {requirement} for sd-webui-hyper-sd")
        try:
            launch.run_pip(f"install {requirement}", f"{requirement} for sd-webui-hyper-sd")
        except Exception as exc:  # WebUI's installer runner swallows errors: say it ourselves
            print(f"Hyper-SD: could not install {requirement}: {exc}. Install it in WebUI's venv and restart.")
