"""install.py in Forge: the Train tab's packages are already in Forge's venv, and nothing pinned would move."""

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from hypersd import deps

# Forge's requirements_versions.txt (main of June 2025, commit dfdcbab6): the pins that matter here.
FORGE_PINS = {
    "accelerate": "0.31.0", "diffusers": "0.31.0", "fastapi": "0.104.1", "gradio": "4.40.0",
    "huggingface-hub": "0.26.2", "peft": "0.13.2", "pydantic": "2.8.2", "safetensors": "0.4.2",
    "transformers": "4.46.1", "torch": "2.3.1",  # torch is unpinned there (its installer picks the build)
}  # fmt: skip


def test_forge_already_has_every_train_package_so_install_py_installs_nothing():
    assert deps.missing_requirements({module: True for module in deps.TRAIN_REQUIREMENTS if module in FORGE_PINS}) == []


def test_each_requirement_admits_forges_pinned_version():
    """Even with a package removed from Forge's venv, pip could satisfy us with Forge's own version."""
    for requirement in deps.TRAIN_REQUIREMENTS.values():
        req = Requirement(requirement)
        assert FORGE_PINS[req.name] in SpecifierSet(str(req.specifier)), requirement


def test_the_constraints_hold_forges_pins():
    lines = deps.constraint_lines(FORGE_PINS)
    for name in ("torch", "gradio", "pydantic", "transformers", "diffusers", "peft", "accelerate"):
        assert f"{name}=={FORGE_PINS[name]}" in lines


def test_the_train_tab_says_which_environment_runs_the_engine():
    note = deps.environment_note("Stable Diffusion WebUI Forge", "/forge/venv/bin/python", [])
    assert "Stable Diffusion WebUI Forge's own Python environment" in note and "/forge/venv/bin/python" in note
    missing = deps.environment_note("AUTOMATIC1111 WebUI", "/a/python", ["peft>=0.13,<0.14"])
    assert "lacks peft>=0.13,<0.14" in missing and "restart AUTOMATIC1111 WebUI once" in missing
