"""The whole-UNet swap: diffusers or ldm keys into an ldm-named UNet, checked against diffusers' own converter."""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers import UNet2DConditionModel  # noqa: E402
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from hypersd import unet_weights  # noqa: E402
from hypersd.distill.models import CONFIGS  # noqa: E402
from hypersd.distill.tiny import tiny_unet_config  # noqa: E402


def test_sdxl_layout_matches_the_shipped_sdxl_config():
    config = json.loads((CONFIGS / "sdxl" / "unet" / "config.json").read_text())
    assert config["layers_per_block"] == unet_weights.SDXL_UNET_LAYOUT["layers_per_block"]
    assert tuple(config["up_block_types"]) == unet_weights.SDXL_UNET_LAYOUT["up_block_types"]


class Node(torch.nn.Module):
    pass


def ldm_standin(names_and_tensors: dict) -> torch.nn.Module:
    """A module tree whose state_dict has exactly these (ldm) names: the loaded sgm UNet's stand-in."""
    root = Node()
    for name, tensor in names_and_tensors.items():
        *path, leaf = name.split(".")
        node = root
        for part in path:
            if part not in node._modules:
                node.add_module(part, Node())
            node = node._modules[part]
        node.register_parameter(leaf, torch.nn.Parameter(tensor.clone(), requires_grad=False))
    return root


@pytest.fixture(scope="module")
def unets():
    config = tiny_unet_config("sdxl")
    torch.manual_seed(0)
    hyper = UNet2DConditionModel(**config)
    torch.manual_seed(1)
    base = UNet2DConditionModel(**config)
    return config, hyper, base


def as_diffusers(module, config):
    """Read the stand-in back through diffusers' ldm → diffusers converter (the independent reference)."""
    ldm = {unet_weights.LDM_PREFIX + k: v for k, v in module.state_dict().items()}
    return convert_ldm_unet_checkpoint(ldm, dict(config))


def base_standin(base, config):
    mapping = unet_weights.ldm_key_map(base.state_dict(), config)
    return ldm_standin({mapping[k]: v for k, v in base.state_dict().items()})


@pytest.mark.parametrize("fmt", ["diffusers", "ldm"])
def test_swap_from_file_then_restore(tmp_path, unets, fmt):
    config, hyper, base = unets
    module = base_standin(base, config)
    first_param = next(module.parameters())
    state = {k: v.contiguous() for k, v in hyper.state_dict().items()}
    if fmt == "ldm":
        mapping = unet_weights.ldm_key_map(state, config)
        state = {unet_weights.LDM_PREFIX + mapping[k]: v for k, v in state.items()}
    path = tmp_path / f"unet-{fmt}.safetensors"
    save_file(state, str(path))
    assert unet_weights.key_format(state) == fmt

    swap = unet_weights.swap_from_safetensors(module, str(path), config)
    assert swap.active and next(module.parameters()) is first_param  # same Parameter objects, new data
    swapped = as_diffusers(module, config)
    for key, value in hyper.state_dict().items():
        assert torch.equal(swapped[key], value), key

    assert swap.restore() == len(hyper.state_dict()) and not swap.active
    restored = as_diffusers(module, config)
    for key, value in base.state_dict().items():
        assert torch.equal(restored[key], value), key


def test_dtype_follows_the_model(unets):
    config, hyper, base = unets
    module = base_standin(base, config).to(torch.float16)
    mapping = unet_weights.ldm_key_map(hyper.state_dict(), config)
    state = hyper.state_dict()
    swap = unet_weights.WeightSwap(module)
    swap.plan(mapping, {k: tuple(v.shape) for k, v in state.items()})
    swap.apply(mapping, lambda key: state[key])
    assert all(p.dtype == torch.float16 for p in module.parameters())
    swap.restore()
    assert all(p.dtype == torch.float16 for p in module.parameters())


def test_a_file_that_does_not_fit_changes_nothing(tmp_path, unets):
    config, hyper, base = unets
    module = base_standin(base, config)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    state = {k: v.contiguous() for k, v in hyper.state_dict().items()}
    state["conv_in.weight"] = torch.zeros(3, 3, 3, 3)
    save_file(state, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(ValueError, match="does not fit"):
        unet_weights.swap_from_safetensors(module, str(tmp_path / "wrong.safetensors"), config)
    incomplete = {k: v for k, v in hyper.state_dict().items() if not k.startswith("conv_out")}
    save_file({k: v.contiguous() for k, v in incomplete.items()}, str(tmp_path / "part.safetensors"))
    with pytest.raises(ValueError, match="lacks 2"):
        unet_weights.swap_from_safetensors(module, str(tmp_path / "part.safetensors"), config)
    for key, value in module.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_a_read_error_midway_restores_what_was_swapped(unets):
    config, hyper, base = unets
    module = base_standin(base, config)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    state = hyper.state_dict()
    mapping = unet_weights.ldm_key_map(state, config)
    calls = []

    def read(key):
        calls.append(key)
        if len(calls) == 5:
            raise OSError("disk gone")
        return state[key]

    swap = unet_weights.WeightSwap(module)
    with pytest.raises(OSError):
        swap.apply(mapping, read)
    assert not swap.active
    for key, value in module.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (["lora_unet_input_blocks_0_0.lora_down.weight"], "LoRA"),
        (["model.diffusion_model.input_blocks.0.0.weight", "first_stage_model.decoder.conv_in.weight"], "checkpoint"),
        (["foo"], "unknown"),
    ],
)
def test_key_format_rejects_other_files(keys, message):
    with pytest.raises(ValueError, match=message):
        unet_weights.key_format(keys)
