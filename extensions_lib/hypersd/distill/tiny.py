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


def word_merges(words: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """BPE merges, learnt on ``words``, that make each of them a single token.

    CLIP's BPE splits a word into its characters (the last one marked ``</w>``) and applies merges by rank.
    Merges learnt the BPE way (merge the most frequent adjacent pair everywhere, repeat until every word is one
    token) reproduce that segmentation when applied by rank; any other word still tokenizes, by characters."""
    enc = _bytes_to_unicode()
    pieces: list[list[str]] = []
    for word in dict.fromkeys(w.lower() for w in words):
        chars = ["".join(enc[b] for b in ch.encode("utf-8")) for ch in word]
        if chars:
            chars[-1] += "</w>"
            pieces.append(chars)
    merges: list[tuple[str, str]] = []
    while True:
        counts: dict[tuple[str, str], int] = {}
        for parts in pieces:
            for pair in zip(parts, parts[1:], strict=False):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            return merges
        best = max(counts, key=lambda pair: (counts[pair], pair[0] + pair[1]))  # ties: a fixed, stable order
        merges.append(best)
        for i, parts in enumerate(pieces):
            merged, j = [], 0
            while j < len(parts):
                if j + 1 < len(parts) and (parts[j], parts[j + 1]) == best:
                    merged.append(parts[j] + parts[j + 1])
                    j += 2
                else:
                    merged.append(parts[j])
                    j += 1
            pieces[i] = merged


def write_tiny_tokenizer(
    folder: pathlib.Path, pad_token: str = "<|endoftext|>", words: tuple[str, ...] = (), max_length: int = 77
) -> int:
    """A CLIP BPE tokenizer: characters, plus one token per word in ``words``; returns its vocabulary size."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    merges = word_merges(words)
    tokens = chars + [c + "</w>" for c in chars]
    tokens += [a + b for a, b in merges if a + b not in tokens]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {
        "model_max_length": max_length,
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
