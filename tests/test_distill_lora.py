"""LoRA key names: our diffusers → ldm map against diffusers' own ldm → diffusers converter, WebUI's rules, and the
shipped SD1.5/SDXL configs against the published parameter counts."""

import json
import pathlib

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("peft")

from diffusers import UNet2DConditionModel  # noqa: E402
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint  # noqa: E402

from hypersd.distill import lora  # noqa: E402
from hypersd.distill.export import ExportError, check_keys_map_in_webui  # noqa: E402
from hypersd.distill.models import CONFIGS  # noqa: E402
from hypersd.distill.tiny import tiny_unet_config  # noqa: E402


def _meta_unet(config: dict):
    from accelerate import init_empty_weights

    with init_empty_weights():
        return UNet2DConditionModel.from_config(config)


def _shipped(base: str, part: str) -> dict:
    return json.loads((CONFIGS / base / part / "config.json").read_text())


def _ldm_state_from_diffusers(unet) -> dict:
    """An ldm state dict built with OUR map (module part) from a diffusers UNet's parameters."""
    state = {}
    for name, param in unet.state_dict().items():
        module, _, leaf = name.rpartition(".")
        state["model.diffusion_model." + lora.diffusers_to_ldm_module(module, unet.config) + "." + leaf] = param
    return state


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(lambda: _shipped("sd15", "unet"), id="sd15-full"),
        pytest.param(lambda: _shipped("sdxl", "unet"), id="sdxl-full"),
        pytest.param(lambda: tiny_unet_config("sd15"), id="sd15-tiny"),
        pytest.param(lambda: tiny_unet_config("sdxl"), id="sdxl-tiny"),
    ],
)
def test_ldm_names_round_trip_through_diffusers_converter(config):
    # Independent reference: diffusers' single-file converter maps ldm keys back to diffusers keys.
    # If our map were wrong anywhere, keys would be missing or land on another parameter (shape/identity check).
    cfg = config()
    unet = _meta_unet(cfg) if cfg["block_out_channels"][0] >= 320 else UNet2DConditionModel(**cfg)
    ldm = _ldm_state_from_diffusers(unet)
    back = convert_ldm_unet_checkpoint(ldm, dict(unet.config))
    original = unet.state_dict()
    assert set(back) == set(original)
    for key, value in original.items():
        if value.device.type == "meta":
            assert back[key].shape == value.shape, key
        else:
            assert back[key] is value or torch.equal(back[key], value), key


def test_ldm_names_of_known_sd15_and_sdxl_modules():
    # Hand-checked against the ldm/sgm UNetModel layout (input block 3 is SD1.5's first downsampler,
    # SDXL's up block 0 has attention so its upsampler is the 3rd entry of output block 2).
    sd15, sdxl = _shipped("sd15", "unet"), _shipped("sdxl", "unet")
    assert lora.diffusers_to_ldm_module("down_blocks.0.downsamplers.0.conv", sd15) == "input_blocks.3.0.op"
    assert (
        lora.diffusers_to_ldm_module("down_blocks.1.resnets.0.conv_shortcut", sd15)
        == "input_blocks.4.0.skip_connection"
    )
    assert lora.diffusers_to_ldm_module("mid_block.resnets.1.conv2", sd15) == "middle_block.2.out_layers.3"
    assert lora.diffusers_to_ldm_module("up_blocks.0.upsamplers.0.conv", sd15) == "output_blocks.2.1.conv"
    assert lora.diffusers_to_ldm_module("up_blocks.0.upsamplers.0.conv", sdxl) == "output_blocks.2.2.conv"
    assert (
        lora.diffusers_to_ldm_module("up_blocks.0.attentions.2.transformer_blocks.9.attn2.to_k", sdxl)
        == "output_blocks.2.1.transformer_blocks.9.attn2.to_k"
    )


def _webui_layer_names_for(cfg: dict) -> set[str]:
    unet = _meta_unet(cfg)
    return lora.webui_layer_names(unet)


@pytest.mark.parametrize("base", ["sd15", "sdxl"])
def test_every_target_of_a_real_unet_maps_onto_a_webui_module(base):
    cfg = _shipped(base, "unet")
    unet = _meta_unet(cfg)
    layer_names = lora.webui_layer_names(unet)
    modules = lora.target_module_names(unet, "all")
    assert len(modules) > 200
    keys = []
    for module in modules:
        stem = lora.kohya_module_key(module, base, cfg)
        keys += [stem + ".lora_down.weight", stem + ".lora_up.weight", stem + ".alpha"]
    assert lora.check_webui_coverage(keys, layer_names) == []
    check_keys_map_in_webui(keys, base, cfg, modules)  # and each lands on its own module
    if base == "sd15":
        assert all(k.startswith("lora_unet_") and "_blocks_" in k or "mid_block" in k for k in keys)
        assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.alpha" in keys
    else:
        assert "lora_unet_input_blocks_4_1_transformer_blocks_1_attn1_to_q.alpha" in keys


def test_webui_rules_reject_what_webui_would_skip():
    names = {"diffusion_model_input_blocks_1_1_proj_in"}
    assert lora.webui_module_name("lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight", names) == (
        "diffusion_model_input_blocks_1_1_proj_in"
    )
    assert lora.webui_module_name("lora_unet_input_blocks_1_1_proj_in.alpha", names) == (
        "diffusion_model_input_blocks_1_1_proj_in"
    )
    # plain dotted diffusers keys are silently ignored by WebUI
    assert lora.webui_module_name("unet.down_blocks.0.attentions.0.proj_in.lora_A.weight", names) is None
    # SD1.5 diffusers-style names with a non-SD1.5 block layout land on the wrong module: the export check refuses
    cfg = {**_shipped("sd15", "unet"), "layers_per_block": 1}
    module = "down_blocks.1.attentions.0.proj_in"
    stem = lora.kohya_module_key(module, "sd15", cfg)
    with pytest.raises(ExportError, match="would not load"):
        check_keys_map_in_webui([stem + ".alpha"], "sd15", cfg, [module])


def test_shipped_configs_match_published_parameter_counts():
    # Public figures: SD1.5 UNet 859,520,964; SDXL UNet 2,567,463,684; SD VAE 83,653,863;
    # CLIP ViT-L/14 text 123,060,480; OpenCLIP bigG text + projection 694,659,840.
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def count(module):
        return sum(p.numel() for p in module.parameters())

    assert count(_meta_unet(_shipped("sd15", "unet"))) == 859_520_964
    assert count(_meta_unet(_shipped("sdxl", "unet"))) == 2_567_463_684
    with init_empty_weights():
        for base in ("sd15", "sdxl"):
            assert count(AutoencoderKL.from_config(_shipped(base, "vae"))) == 83_653_863
            te = CLIPTextModel(CLIPTextConfig.from_dict(_shipped(base, "text_encoder")))
            assert count(te) == 123_060_480
        te2 = CLIPTextModelWithProjection(CLIPTextConfig.from_dict(_shipped("sdxl", "text_encoder_2")))
        assert count(te2) == 694_659_840


def test_configs_folder_is_complete():
    for base, parts in {
        "sd15": ["unet", "vae", "text_encoder"],
        "sdxl": ["unet", "vae", "text_encoder", "text_encoder_2"],
    }.items():
        for part in parts:
            assert (CONFIGS / base / part / "config.json").is_file()
        assert (CONFIGS / base / "scheduler" / "scheduler_config.json").is_file()
    assert pathlib.Path(lora.__file__).parent == CONFIGS.parent
