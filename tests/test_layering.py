"""The core never imports WebUI (`modules`), gradio, or our adapters (A1111's, Forge's); nothing heavy loads at
import."""

import ast
import pathlib
import subprocess
import sys

import pytest

CORE = pathlib.Path(__file__).resolve().parents[1] / "extensions_lib" / "hypersd"
FORBIDDEN_ROOTS = {"modules", "gradio", "launch", "webui"}
ADAPTER = "hypersd.webui"
ADAPTERS = (ADAPTER, "hypersd.forge")  # the Forge adapter sits beside A1111's and reuses it


def _imports(path: pathlib.Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(CORE.parent).with_suffix("").parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level)[0]
                yield f"{base}.{node.module}" if node.module else base
            else:
                yield node.module or ""


def core_files():
    return [p for p in CORE.rglob("*.py") if not {"webui", "forge"} & set(p.relative_to(CORE).parts)]


def test_there_is_a_core_to_check():
    names = {p.name for p in core_files()}
    assert {"schedules.py", "sampling.py"} <= names


def test_core_never_imports_webui_gradio_or_adapter():
    offenders = []
    for path in core_files():
        for name in _imports(path):
            root = name.split(".")[0]
            if root in FORBIDDEN_ROOTS or any(name == a or name.startswith(a + ".") for a in ADAPTERS):
                offenders.append(f"{path.relative_to(CORE)} imports {name}")
    assert offenders == []


def test_the_checker_sees_relative_and_absolute_imports(tmp_path):
    # A checker that found nothing would pass vacuously: make sure it reports what it must.
    fake = CORE / "_layering_probe.py"
    fake.write_text("import modules.shared\nfrom .webui import x\nfrom gradio import Blocks\n", encoding="utf-8")
    try:
        found = set(_imports(fake))
    finally:
        fake.unlink()
    assert {"modules.shared", "hypersd.webui", "gradio"} <= found


HEAVY = ("modules", "gradio", "diffusers", "peft", "accelerate", "transformers")


def _loaded_after_import(imports: str, forbidden: tuple[str, ...]) -> None:
    """Import ``imports`` in a fresh interpreter; fail naming any ``forbidden`` module that came with them."""
    code = (
        f"import sys, {imports}; bad = [m for m in {forbidden!r} if m in sys.modules]; print(bad);"
        "sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_importing_the_core_loads_no_host_or_training_packages():
    _loaded_after_import("hypersd, hypersd.schedules, hypersd.sampling, hypersd.denoiser", (*HEAVY, "hypersd.webui"))


def test_the_forge_adapter_loads_nothing_of_the_host_at_import():
    """The glue imports hypersd.forge.detect before it knows the host: host modules load only in setup()."""
    _loaded_after_import("hypersd.forge.detect, hypersd.forge.host_state, hypersd.forge.samplers", HEAVY)


def test_the_train_tab_loads_nothing_heavy_at_webui_start():
    """The tab is registered at WebUI start: training packages load only in its subprocess."""
    _loaded_after_import("hypersd.webui.train_tab, hypersd.train.preflight", HEAVY)


def test_the_import_checker_can_fail():
    with pytest.raises(AssertionError, match="csv"):
        _loaded_after_import("hypersd, csv", ("csv",))
