"""LoRA on the UNet (peft through diffusers' adapter API) and the kohya key names WebUI understands.

Key naming (WEBUI.md "LoRA"): SD1.5 files use diffusers-style module names (``lora_unet_down_blocks_0_…``), which
WebUI's ``convert_diffusers_name_to_compvis`` maps onto its ldm modules; SDXL files use the original sgm names
(``lora_unet_input_blocks_…``), which WebUI maps by replacing ``lora_unet`` with ``diffusion_model``.
:func:`webui_module_name` transcribes WebUI v1.10.1's rules (extensions-builtin/Lora/networks.py) so that the
exporter can prove every key lands on a module; :func:`diffusers_to_ldm_module` is the diffusers → ldm module
name map (checked in the tests against diffusers' own ldm → diffusers converter).
"""

from __future__ import annotations

import re
import warnings
import weakref
from typing import Any

import torch

ADAPTER_NAME = "hypersd"

#: Module name suffixes LoRA attaches to (the diffusers LCM-LoRA script's list).
TARGETS = {
    "attn": ["to_q", "to_k", "to_v", "to_out.0"],
    "attn_ff": ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"],
    "all": [
        "to_q",
        "to_k",
        "to_v",
        "to_out.0",
        "proj_in",
        "proj_out",
        "ff.net.0.proj",
        "ff.net.2",
        "conv1",
        "conv2",
        "conv_shortcut",
        "downsamplers.0.conv",
        "upsamplers.0.conv",
        "time_emb_proj",
    ],
}


def target_module_names(unet: torch.nn.Module, targets: str) -> list[str]:
    """Full names of the UNet's Linear/Conv2d modules whose name ends in one of TARGETS[targets]."""
    suffixes = TARGETS[targets]
    names = []
    for name, module in unet.named_modules():
        layer = getattr(module, "base_layer", module)  # a layer that already carries an adapter (peft wraps it)
        if isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d)) and any(
            name == s or name.endswith("." + s) for s in suffixes
        ):
            names.append(name)
    return names


def add_lora(
    unet: Any, rank: int, alpha: float, targets: str = "all", seed: int | None = None, adapter_name: str = ADAPTER_NAME
) -> list[str]:
    """Attach a trainable LoRA (peft) named ``adapter_name`` to ``unet``; return the module names it wraps.

    Base weights stay frozen; lora_B starts at zero (peft's default) so that the adapter starts as the teacher.
    A second adapter (the score-distillation stage's fake score) sits beside the student's on the same layers;
    the student's adapter stays the active one (``views.active_adapter`` switches for a call).
    """
    from peft import LoraConfig

    names = target_module_names(unet, targets)
    if not names:
        raise ValueError(f"Hyper-SD: no UNet modules match the LoRA targets {targets!r}")
    config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=names)
    unet.requires_grad_(False)
    if seed is not None:
        torch.manual_seed(seed)
    with warnings.catch_warnings():  # peft warns that a second adapter is being added: that is the point here
        warnings.filterwarnings("ignore", message=".*multiple adapters.*")
        unet.add_adapter(config, adapter_name=adapter_name)
    _LAYERS.pop(unet, None)
    _activate(unet, ADAPTER_NAME if _has_adapter(unet, ADAPTER_NAME) else adapter_name)
    for name, param in unet.named_parameters():
        param.requires_grad_(".lora_A." in name or ".lora_B." in name)
    return names


#: each UNet's peft layers, found once (a walk over a UNet's modules costs as much as a small layer's forward, and
#: the views switch adapters several times per training step); add_lora forgets a UNet's entry
_LAYERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _tuner_layers(unet: Any) -> list[Any]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    if unet not in _LAYERS:
        _LAYERS[unet] = [m for m in unet.modules() if isinstance(m, BaseTunerLayer)]
    return _LAYERS[unet]


def _has_adapter(unet: Any, name: str) -> bool:
    return any(name in getattr(layer, "lora_A", {}) for layer in _tuner_layers(unet))


def _activate(unet: Any, name: str) -> None:
    """Make ``name`` the adapter every LoRA layer runs, without touching requires_grad (peft's set_adapter would)."""
    for layer in _tuner_layers(unet):
        layer._active_adapter = [name]


def lora_parameters(unet: Any, adapter_name: str | None = ADAPTER_NAME) -> list[tuple[str, torch.nn.Parameter]]:
    """(name, parameter) of every LoRA weight of one adapter (None: of all adapters), in a stable order."""
    out = []
    for n, p in unet.named_parameters():
        if ".lora_A." not in n and ".lora_B." not in n:
            continue
        if adapter_name is None or f".{adapter_name}." in n:
            out.append((n, p))
    return out


# --------------------------------------------------------------------------------------------- ldm names

_RESNET_TO_LDM = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}


def diffusers_to_ldm_module(name: str, unet_config: Any) -> str:
    """The ldm/sgm UNet module name (``input_blocks.4.1.proj_in``) of a diffusers UNet module name.

    Follows the block layout of ldm's UNetModel: input block 0 is conv_in; each down block contributes
    ``layers_per_block`` (resnet[, attention]) entries and then a downsampler; each up block
    ``layers_per_block + 1`` entries, its upsampler sitting in the last one after the attention (if any).
    """
    cfg = dict(unet_config)
    per_block = cfg["layers_per_block"]
    up_types = cfg["up_block_types"]

    def resnet_part(rest: str) -> str:
        head, _, tail = rest.partition(".")
        return _RESNET_TO_LDM.get(head, head) + ("." + tail if tail else "")

    simple = {
        "conv_in": "input_blocks.0.0",
        "conv_out": "out.2",
        "conv_norm_out": "out.0",
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2",
    }
    if name in simple:
        return simple[name]
    m = re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", name)
    if m:
        block, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = 1 + block * (per_block + 1) + j
        return f"input_blocks.{index}.0.{resnet_part(rest)}" if kind == "resnets" else f"input_blocks.{index}.1.{rest}"
    m = re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv(.*)", name)
    if m:
        return f"input_blocks.{(int(m[1]) + 1) * (per_block + 1)}.0.op{m[2]}"
    m = re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", name)
    if m:
        if m[1] == "attentions":
            return f"middle_block.1.{m[3]}"
        return f"middle_block.{int(m[2]) * 2}.{resnet_part(m[3])}"
    m = re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", name)
    if m:
        block, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = block * (per_block + 1) + j
        return (
            f"output_blocks.{index}.0.{resnet_part(rest)}" if kind == "resnets" else f"output_blocks.{index}.1.{rest}"
        )
    m = re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv(.*)", name)
    if m:
        block = int(m[1])
        has_attention = up_types[block].startswith("CrossAttn")
        index = block * (per_block + 1) + per_block
        return f"output_blocks.{index}.{2 if has_attention else 1}.conv{m[2]}"
    raise ValueError(f"Hyper-SD: no ldm name known for the UNet module {name!r}")


# --------------------------------------------------------------------------------------------- WebUI's rules

_SUFFIX_CONVERSION = {
    "attentions": {},
    "resnets": {
        "conv1": "in_layers_2",
        "conv2": "out_layers_3",
        "norm1": "in_layers_0",
        "norm2": "out_layers_0",
        "time_emb_proj": "emb_layers_1",
        "conv_shortcut": "skip_connection",
    },
}


def _webui_convert_diffusers_name_to_compvis(key: str) -> str:
    """WebUI v1.10.1 ``convert_diffusers_name_to_compvis`` (UNet part), transcribed rule for rule."""

    def ints(groups: tuple[str, ...]) -> list[Any]:
        return [int(g) if re.match(r"\d+", g) else g for g in groups]

    if m := re.match(r"lora_unet_conv_in(.*)", key):
        return f"diffusion_model_input_blocks_0_0{m[1]}"
    if m := re.match(r"lora_unet_conv_out(.*)", key):
        return f"diffusion_model_out_2{m[1]}"
    if m := re.match(r"lora_unet_time_embedding_linear_(\d+)(.*)", key):
        g = ints(m.groups())
        return f"diffusion_model_time_embed_{g[0] * 2 - 2}{g[1]}"
    if m := re.match(r"lora_unet_down_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)", key):
        g = ints(m.groups())
        suffix = _SUFFIX_CONVERSION.get(g[1], {}).get(g[3], g[3])
        return f"diffusion_model_input_blocks_{1 + g[0] * 3 + g[2]}_{1 if g[1] == 'attentions' else 0}_{suffix}"
    if m := re.match(r"lora_unet_mid_block_(attentions|resnets)_(\d+)_(.+)", key):
        g = ints(m.groups())
        suffix = _SUFFIX_CONVERSION.get(g[0], {}).get(g[2], g[2])
        return f"diffusion_model_middle_block_{1 if g[0] == 'attentions' else g[1] * 2}_{suffix}"
    if m := re.match(r"lora_unet_up_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)", key):
        g = ints(m.groups())
        suffix = _SUFFIX_CONVERSION.get(g[1], {}).get(g[3], g[3])
        return f"diffusion_model_output_blocks_{g[0] * 3 + g[2]}_{1 if g[1] == 'attentions' else 0}_{suffix}"
    if m := re.match(r"lora_unet_down_blocks_(\d+)_downsamplers_0_conv", key):
        return f"diffusion_model_input_blocks_{3 + int(m[1]) * 3}_0_op"
    if m := re.match(r"lora_unet_up_blocks_(\d+)_upsamplers_0_conv", key):
        block = int(m[1])
        return f"diffusion_model_output_blocks_{2 + block * 3}_{2 if block > 0 else 1}_conv"
    return key


def webui_module_name(key: str, layer_names: set[str]) -> str | None:
    """The WebUI ``network_layer_mapping`` name a LoRA key lands on, or None when WebUI would skip it.

    ``layer_names`` is WebUI's mapping for the model: ldm module names with "." replaced by "_"
    (``diffusion_model_input_blocks_1_1_proj_in``). Mirrors ``load_network``: split at the first ".",
    try the diffusers→compvis rules, then the ``_[qkv]_proj`` fold, then ``lora_unet`` → ``diffusion_model``.
    """
    base_key = key.partition(".")[0]
    name = _webui_convert_diffusers_name_to_compvis(base_key)
    if name in layer_names:
        return name
    m = re.match(r"(.*)_([qkv]_proj)$", name)
    if m and m[1] in layer_names:
        return m[1]
    if "lora_unet" in base_key:
        name = base_key.replace("lora_unet", "diffusion_model")
        if name in layer_names:
            return name
    return None


def webui_layer_names(unet: Any) -> set[str]:
    """WebUI's layer names for the ldm UNet that corresponds to a diffusers ``unet`` (weight-bearing modules)."""
    names = set()
    for name, module in unet.named_modules():
        if name and any(True for _ in module.parameters(recurse=False)) and "lora_" not in name:
            base = name.replace(".base_layer", "")
            try:
                names.add("diffusion_model_" + diffusers_to_ldm_module(base, unet.config).replace(".", "_"))
            except ValueError:
                continue
    return names


# --------------------------------------------------------------------------------------------- kohya export


def kohya_module_key(module: str, base: str, unet_config: Any) -> str:
    """``lora_unet_…`` for a diffusers module name: diffusers-style for SD1.5, sgm names for SDXL."""
    name = module if base == "sd15" else diffusers_to_ldm_module(module, unet_config)
    return "lora_unet_" + name.replace(".", "_")


def kohya_state_dict(
    lora_weights: dict[str, torch.Tensor], base: str, unet_config: Any, alpha: float, dtype: torch.dtype = torch.float16
) -> dict[str, torch.Tensor]:
    """Kohya-format tensors from peft names (``<module>.lora_A[.<adapter>].weight``) → down/up/alpha."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in lora_weights.items():
        m = re.fullmatch(r"(.+)\.lora_([AB])(?:\.[^.]+)?\.weight", name)
        if not m:
            raise ValueError(f"Hyper-SD: unexpected LoRA parameter name {name!r}")
        key = kohya_module_key(m[1], base, unet_config)
        part = "lora_down" if m[2] == "A" else "lora_up"
        out[f"{key}.{part}.weight"] = tensor.detach().to("cpu", dtype).contiguous()
        out[f"{key}.alpha"] = torch.tensor(float(alpha), dtype=dtype)
    return out


def check_webui_coverage(keys: list[str], layer_names: set[str]) -> list[str]:
    """Keys WebUI would silently skip (empty when every key maps onto a module)."""
    return [k for k in keys if webui_module_name(k, layer_names) is None]
