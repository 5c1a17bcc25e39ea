"""Kohya-format LoRA files (metadata from :mod:`hypersd.lora_metadata`), written atomically and checked against WebUI's rules."""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from typing import Any

import torch

from hypersd.lora_metadata import with_measured

from .lora import diffusers_to_ldm_module, kohya_state_dict, webui_module_name


class ExportError(RuntimeError):
    pass


def atomic_write(path: str | pathlib.Path, write: Any) -> None:
    """Call ``write(tmp_path)`` and move the result onto ``path`` only when it succeeded (same folder, os.replace).

    A crash, Ctrl-C or a full disk leaves either the old file or none, never a truncated one.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        _remove_quietly(tmp)
        if err.errno == 28:  # ENOSPC
            raise ExportError(
                f"Hyper-SD: no disk space left writing {path}; free space and run again with --resume"
            ) from err
        raise
    except BaseException:
        _remove_quietly(tmp)
        raise


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def check_keys_map_in_webui(keys: list[str], base: str, unet_config: Any, modules: list[str]) -> None:
    """Each exported key must land, by WebUI's own rules, on exactly the ldm module it was trained on."""
    expected = {}
    for module in modules:
        ldm = "diffusion_model_" + diffusers_to_ldm_module(module, unet_config).replace(".", "_")
        expected[module] = ldm
    layer_names = set(expected.values())
    module_of_key = {}
    for module in modules:
        from .lora import kohya_module_key

        module_of_key[kohya_module_key(module, base, unet_config)] = module
    bad = []
    for key in keys:
        stem = key.partition(".")[0]
        got = webui_module_name(key, layer_names)
        if got is None or got != expected.get(module_of_key.get(stem, "")):
            bad.append(f"{key} -> {got}")
    if bad:
        raise ExportError(
            f"Hyper-SD: {len(bad)} LoRA keys would not load onto the right WebUI module, e.g. {bad[:3]}; "
            "this UNet layout is not the standard SD1.5/SDXL one"
        )


def export_lora(
    path: str | pathlib.Path,
    lora_weights: dict[str, torch.Tensor],
    *,
    base: str,
    unet_config: Any,
    metadata: dict[str, str],
    alpha: float,
    dtype: torch.dtype = torch.float16,
) -> dict[str, torch.Tensor]:
    """Write a kohya LoRA (atomic); refuse when a key would be silently ignored by WebUI. Returns the tensors."""
    from safetensors.torch import save_file

    tensors = kohya_state_dict(lora_weights, base, unet_config, alpha, dtype)
    modules = sorted({name.split(".lora_")[0] for name in lora_weights})
    check_keys_map_in_webui(list(tensors), base, unet_config, modules)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return tensors


def update_metadata(path: str | pathlib.Path, measured: dict[str, Any]) -> dict[str, str]:
    """Rewrite the LoRA at ``path`` (atomically, same tensors) with the measured ``steps``/``sampler``/``scheduler``/
    ``cfg``/``gamma`` in its hypersd_* metadata; returns the new metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as handle:
        meta = dict(handle.metadata() or {})
    tensors = load_file(str(path))
    meta = with_measured(meta, measured)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return meta
