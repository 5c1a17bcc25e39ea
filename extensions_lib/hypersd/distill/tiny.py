"""Tiny randomly initialised SD1.5/SDXL-architecture models written as diffusers folders (tests, benchmarks, smoke runs).

Nothing is downloaded: the models are built from configs, the CLIP tokenizer from a byte-level vocabulary written
here. The SD1.5 UNet keeps SD1.5's block layout (two resnets per block, first up block without attention) so that
WebUI's hard-coded SD1.5 LoRA name rules apply to it unchanged.
"""

from __future__ import annotations

import json
import pathlib

import torch


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte → printable-character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def write_tiny_tokenizer(folder: pathlib.Path, pad_token: str = "<|endoftext|>") -> int:
    """A character-level CLIP BPE tokenizer (no merges); returns its vocabulary size."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    config = {
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": pad_token,
        "tokenizer_class": "CLIPTokenizer",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return len(vocab)


def tiny_unet_config(base: str = "sd15") -> dict:
    common = {
        "sample_size": 8,
        "in_channels": 4,
        "out_channels": 4,
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "attention_head_dim": 8,
    }
    if base == "sd15":
        return {
            **common,
            "block_out_channels": [32, 64],
            "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
            "cross_attention_dim": 32,
        }
    return {
        **common,
        "block_out_channels": [32, 64],
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "cross_attention_dim": 64,
        "transformer_layers_per_block": [1, 2],
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 8,
        "projection_class_embeddings_input_dim": 6 * 8 + 32,
    }


def _reinit(module: torch.nn.Module, generator: torch.Generator) -> None:
    """diffusers zero-initialises some output layers; random values there make the tiny UNet's output depend on
    every input (prompt, timestep, LoRA), as a trained model's does."""
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim >= 1 and bool((p == 0).all()):
                p.copy_(torch.randn(p.shape, generator=generator) * 0.02)


def build_tiny_model(folder: str | pathlib.Path, base: str = "sd15", seed: int = 0) -> pathlib.Path:
    """Write a tiny random diffusers folder (unet, vae, text encoder(s), tokenizer(s), scheduler) and return it."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = pathlib.Path(folder)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    vocab = write_tiny_tokenizer(folder / "tokenizer")
    text_cfg = {
        "vocab_size": vocab,
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
        "projection_dim": 32,
        "bos_token_id": vocab - 2,
        "eos_token_id": vocab - 1,
        "pad_token_id": vocab - 1,
    }
    CLIPTextModel(CLIPTextConfig(**text_cfg)).save_pretrained(folder / "text_encoder")
    components = {"text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"]}
    if base == "sdxl":
        write_tiny_tokenizer(folder / "tokenizer_2", pad_token="!")
        CLIPTextModelWithProjection(CLIPTextConfig(**text_cfg)).save_pretrained(folder / "text_encoder_2")
        components.update(
            text_encoder_2=["transformers", "CLIPTextModelWithProjection"],
            tokenizer_2=["transformers", "CLIPTokenizer"],
        )
    unet = UNet2DConditionModel(**tiny_unet_config(base))
    _reinit(unet, gen)
    unet.save_pretrained(folder / "unet")
    vae = AutoencoderKL(
        block_out_channels=[16, 16, 16, 16],
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
    )
    vae.save_pretrained(folder / "vae")
    DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    ).save_pretrained(folder / "scheduler")
    pipeline = "StableDiffusionXLPipeline" if base == "sdxl" else "StableDiffusionPipeline"
    index = {
        "_class_name": pipeline,
        "_diffusers_version": "0.35.0",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "scheduler": ["diffusers", "DDIMScheduler"],
        **components,
    }
    if base == "sd15":
        index.update(safety_checker=[None, None], feature_extractor=[None, None], requires_safety_checker=False)
    (folder / "model_index.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    return folder
