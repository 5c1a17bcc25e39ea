"""A whole-UNet replacement (the Hyper-SDXL 1-step UNet) applied to an already loaded ldm/sgm UNet, reversibly.

The official ``Hyper-SDXL-1step-Unet.safetensors`` is loaded by its model card with
``UNet2DConditionModel.load_state_dict(load_file(...))``, i.e. it holds diffusers key names
(``down_blocks.1.attentions.0.proj_in.weight``); the ComfyUI variant and other copies hold ldm names
(``input_blocks.4.1.proj_in.weight``, optionally prefixed ``model.diffusion_model.``).  Both are accepted:
diffusers names are mapped with :func:`hypersd.distill.lora.diffusers_to_ldm_module`.

:class:`WeightSwap` puts the new tensors into the module's parameters in place (same module, same hooks, same
forward) and keeps the replaced tensors on the CPU, so that :meth:`WeightSwap.restore` gives the exact original
weights back.  Everything is checked before the first tensor changes: a file that does not fit leaves the model as
it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from hypersd.distill.lora import diffusers_to_ldm_module

#: The block layout of SDXL's UNet (diffusers' stabilityai/stable-diffusion-xl-base-1.0 unet/config.json).
SDXL_UNET_LAYOUT = {
    "layers_per_block": 2,
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
}
LDM_PREFIX = "model.diffusion_model."
_DIFFUSERS_ROOTS = ("down_blocks.", "up_blocks.", "mid_block.", "conv_in.", "conv_out.", "conv_norm_out.",
                    "time_embedding.", "add_embedding.")  # fmt: skip
_LDM_ROOTS = ("input_blocks.", "output_blocks.", "middle_block.", "time_embed.", "label_emb.", "out.")


def key_format(keys: Iterable[str]) -> str:
    """The key layout, "diffusers" or "ldm"; a clear error for anything else (e.g. a LoRA or a checkpoint)."""
    keys = list(keys)
    if any(".lora_" in k or k.startswith("lora_") for k in keys):
        raise ValueError("Hyper-SD: this file is a LoRA, not a UNet: put it into the Lora folder instead.")
    stripped = [k.removeprefix(LDM_PREFIX) for k in keys]
    if any(k.startswith(("first_stage_model.", "cond_stage_model.", "conditioner.")) for k in keys):
        raise ValueError("Hyper-SD: this file is a full checkpoint, not a UNet: put it into Stable-diffusion.")
    if stripped and all(k.startswith(_LDM_ROOTS) for k in stripped):
        return "ldm"
    if keys and all(k.startswith(_DIFFUSERS_ROOTS) for k in keys):
        return "diffusers"
    raise ValueError("Hyper-SD: unknown UNet key layout (neither diffusers nor ldm names).")


def ldm_key(key: str, fmt: str, layout: Mapping[str, Any] = SDXL_UNET_LAYOUT) -> str:
    """The ldm/sgm UNet parameter name (no ``model.diffusion_model.`` prefix) of a key in the file."""
    if fmt == "ldm":
        return key.removeprefix(LDM_PREFIX)
    module, _, leaf = key.rpartition(".")
    return diffusers_to_ldm_module(module, layout) + "." + leaf


def ldm_key_map(keys: Iterable[str], layout: Mapping[str, Any] = SDXL_UNET_LAYOUT) -> dict[str, str]:
    """{key in the file: ldm parameter name} for every key; raises on a name that has no ldm counterpart."""
    keys = list(keys)
    fmt = key_format(keys)
    mapping = {key: ldm_key(key, fmt, layout) for key in keys}
    if len(set(mapping.values())) != len(mapping):
        raise ValueError("Hyper-SD: two keys of the UNet file map to the same ldm parameter.")
    return mapping


class WeightSwap:
    """Replace every parameter/buffer of ``module`` named in the file by the file's tensor; undo with restore().

    ``read(key)`` returns the file's tensor for a key (e.g. ``safe_open(...).get_tensor``), so a 10 GB fp32 file is
    read one tensor at a time and cast straight to the model's dtype; peak extra memory is the model-sized copy.
    """

    def __init__(self, module: torch.nn.Module):
        self.module = module
        self._originals: dict[str, torch.Tensor] = {}

    @property
    def active(self) -> bool:
        return bool(self._originals)

    def plan(self, mapping: Mapping[str, str], shapes: Mapping[str, tuple[int, ...]]) -> dict[str, str]:
        """Check that the file fits the module exactly: every UNet tensor replaced, all shapes equal."""
        targets = dict(self.module.state_dict(keep_vars=True))
        unknown = sorted(name for name in mapping.values() if name not in targets)
        if unknown:
            raise ValueError(f"Hyper-SD: the UNet file has {len(unknown)} tensors the loaded model lacks, e.g. "
                             f"{unknown[:3]}: is the loaded checkpoint SDXL?")  # fmt: skip
        wanted = {name for name, t in targets.items() if t.is_floating_point()}
        missing = sorted(wanted - set(mapping.values()))
        if missing:
            raise ValueError(f"Hyper-SD: the UNet file lacks {len(missing)} of the model's tensors, e.g. "
                             f"{missing[:3]}: it is not a complete SDXL UNet.")  # fmt: skip
        for key, name in mapping.items():
            if tuple(shapes[key]) != tuple(targets[name].shape):
                raise ValueError(f"Hyper-SD: {key} has shape {tuple(shapes[key])}, the model's {name} has "
                                 f"{tuple(targets[name].shape)}: the UNet file does not fit the loaded model.")  # fmt: skip
        return dict(mapping)

    def apply(self, mapping: Mapping[str, str], read: Callable[[str], torch.Tensor]) -> int:
        """Swap the tensors in (after :meth:`plan`); returns how many were replaced."""
        if self.active:
            raise RuntimeError("Hyper-SD: the UNet weights are already swapped; restore first.")
        targets = dict(self.module.state_dict(keep_vars=True))
        try:
            with torch.no_grad():
                for key, name in mapping.items():
                    target = targets[name]
                    new = read(key).to(device=target.device, dtype=target.dtype)
                    self._originals[name] = target.data.to("cpu", copy=True)
                    target.data = new
        except BaseException:
            self.restore()
            raise
        return len(self._originals)

    def restore(self) -> int:
        """Put the original tensors back (on the device the parameter is on now); returns how many."""
        targets = dict(self.module.state_dict(keep_vars=True))
        count = 0
        with torch.no_grad():
            for name, original in self._originals.items():
                target = targets[name]
                target.data = original.to(device=target.device, dtype=target.dtype)
                count += 1
        self._originals.clear()
        return count


def swap_from_safetensors(module: torch.nn.Module, path: str, layout: Mapping[str, Any] = SDXL_UNET_LAYOUT):
    """Load a UNet file (diffusers or ldm keys) into ``module`` in place; returns the WeightSwap to restore it."""
    from safetensors import safe_open

    with safe_open(path, framework="pt", device="cpu") as file:
        keys = list(file.keys())
        mapping = ldm_key_map(keys, layout)
        shapes = {key: tuple(file.get_slice(key).get_shape()) for key in keys}
        swap = WeightSwap(module)
        swap.plan(mapping, shapes)
        swap.apply(mapping, file.get_tensor)
    return swap
