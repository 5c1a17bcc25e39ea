"""The demo teacher: a tiny Stable Diffusion 1.5 in diffusers layout, trained on the CPU on the synthetic domain.

``python -m hypersd demo --train-teacher`` rebuilds ``assets/teacher/`` (a few MB, fp16):

* ``unet/``: a ``UNet2DConditionModel`` with SD1.5's block structure (4 levels, cross-attention on the first 3,
  2 layers per block, so WebUI's SD1.5 LoRA name rules apply to it) at tiny widths;
* ``text_encoder/`` + ``tokenizer/``: a tiny ``CLIPTextModel`` and a CLIP BPE tokenizer whose vocabulary holds
  the domain's words (offline: written here, not downloaded);
* ``vae/``: a tiny ``AutoencoderKL`` (32x32 RGB <-> 4x8x8 latents) with its own scaling factor;
* ``scheduler/``: SD1.5's scheduler config; ``classifier.safetensors``: the shape/colour classifier.

The engine loads it like any diffusers SD1.5 folder (``hypersd.distill.models.load_model``).
"""

from __future__ import annotations

import json
import math
import pathlib
import shutil
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from hypersd import tscd
from hypersd.schedules import alphas_cumprod

from .classifier import CLASSIFIER_FILE, ShapeColorClassifier, save_classifier
from .domain import COLOR_NAMES, IMAGE_SIZE, SHAPES, TEMPLATES, label_tensors, make_dataset

TEACHER_DIR = pathlib.Path(__file__).resolve().parent / "assets" / "teacher"
MAX_TOKENS = 16  # captions are a few words; CLIP's 77 positions would only cost time here
WORDS = tuple(
    sorted(
        {w for t in TEMPLATES for w in t.replace(",", " , ").split() if "{" not in w} | set(SHAPES) | set(COLOR_NAMES)
    )
)
TEXT_WIDTH = 64
Log = Callable[[str], None]


def unet_config() -> dict:
    """SD1.5's UNet block structure (diffusers' stable-diffusion-v1-5 unet/config.json) at tiny widths."""
    return {
        "sample_size": IMAGE_SIZE // 4,
        "in_channels": 4,
        "out_channels": 4,
        "layers_per_block": 2,
        "block_out_channels": [32, 32, 64, 64],
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "cross_attention_dim": TEXT_WIDTH,
        "attention_head_dim": 2,  # diffusers' legacy name for the number of heads (SD1.5: 8)
        "norm_num_groups": 8,
    }


def vae_config() -> dict:
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * 3,
        "up_block_types": ["UpDecoderBlock2D"] * 3,
        "block_out_channels": [16, 32, 64],
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 16,
        "sample_size": IMAGE_SIZE,
    }


def text_config(vocab_size: int) -> dict:
    return {
        "vocab_size": vocab_size,
        "hidden_size": TEXT_WIDTH,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": MAX_TOKENS,
        "projection_dim": TEXT_WIDTH,
        "bos_token_id": vocab_size - 2,
        "eos_token_id": vocab_size - 1,
        "pad_token_id": vocab_size - 1,
    }


def _schedule(step: int, total: int, warmup: int) -> float:
    return min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / total)))


def _ema(ema: torch.nn.Module, net: torch.nn.Module, step: int, decay: float) -> None:
    tscd.ema_update(ema.parameters(), net.parameters(), min(decay, (1 + step) / (10 + step)))


def train_vae(images: torch.Tensor, steps: int, seed: int, log: Log) -> torch.nn.Module:
    """Reconstruction (L1 + MSE) with a small KL term; the scaling factor makes the latents unit-variance."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    vae = AutoencoderKL(**vae_config())
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    start = time.time()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = 1e-3 * _schedule(step, steps, 100)
        x = images[torch.randint(len(images), (32,), generator=gen)]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=None)).sample
        loss = F.l1_loss(recon, x) + F.mse_loss(recon, x) + 1e-6 * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % max(1, steps // 10) == 0:
            log(f"  VAE step {step + 1}/{steps}  loss {loss.item():.4f}  ({time.time() - start:.0f} s)")
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        latents = torch.cat(
            [vae.encode(images[i : i + 256]).latent_dist.mean for i in range(0, min(len(images), 2048), 256)]
        )
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    return vae


def train_classifier(images: torch.Tensor, labels: list, steps: int, seed: int, log: Log) -> ShapeColorClassifier:
    """Shape and colour heads; inputs are blurred and noised at random so that soft few-step samples read too."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = ShapeColorClassifier()
    shapes, colors = label_tensors(labels)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3)
    for step in range(steps):
        idx = torch.randint(len(images), (128,), generator=gen)
        x = images[idx]
        if step % 2:
            x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        x = x + torch.randn(x.shape, generator=gen) * torch.rand(len(x), 1, 1, 1, generator=gen) * 0.3
        shape_logits, color_logits = net(x)
        loss = F.cross_entropy(shape_logits, shapes[idx]) + F.cross_entropy(color_logits, colors[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % max(1, steps // 5) == 0:
            log(f"  classifier step {step + 1}/{steps}  loss {loss.item():.4f}")
    return net.eval().requires_grad_(False)


def train_denoiser(unet, encoder, tokenizer, vae, images, captions, steps: int, seed: int, log: Log) -> tuple:
    """eps-prediction on SD1.5's noise schedule, text encoder trained jointly, 15 % empty captions (for CFG)."""
    import copy

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    acp = alphas_cumprod()
    with torch.no_grad():
        dists = [vae.encode(images[i : i + 256]).latent_dist for i in range(0, len(images), 256)]
        mean = torch.cat([d.mean for d in dists]) * vae.config.scaling_factor
        std = torch.cat([d.std for d in dists]) * vae.config.scaling_factor
    ids = tokenizer(
        captions, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt"
    ).input_ids
    empty = tokenizer([""], padding="max_length", max_length=MAX_TOKENS, return_tensors="pt").input_ids
    ema_unet, ema_encoder = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(encoder).requires_grad_(False)
    params = list(unet.parameters()) + list(encoder.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    losses: list[float] = []
    start = time.time()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = 1e-3 * _schedule(step, steps, 200)
        idx = torch.randint(len(mean), (64,), generator=gen)
        x0 = mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)
        batch_ids = ids[idx].clone()
        batch_ids[torch.rand(len(idx), generator=gen) < 0.15] = empty[0]
        eps = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, len(acp), (len(idx),), generator=gen)
        hidden = encoder(batch_ids)[0]
        loss = F.mse_loss(unet(tscd.add_noise(x0, eps, t, acp), t, encoder_hidden_states=hidden).sample, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        _ema(ema_unet, unet, step, 0.999)
        _ema(ema_encoder, encoder, step, 0.999)
        losses.append(loss.item())
        if (step + 1) % max(1, steps // 20) == 0:
            recent = sum(losses[-200:]) / len(losses[-200:])
            log(f"  denoiser step {step + 1}/{steps}  loss {recent:.4f}  ({time.time() - start:.0f} s)")
    return ema_unet.eval(), ema_encoder.eval()


TEXT_MODEL_PREFIX = "text_model."


def prefix_text_encoder_keys(path: pathlib.Path) -> None:
    """Rewrite a saved ``CLIPTextModel`` with its keys under ``text_model.``, the layout of every hub CLIP checkpoint:
    transformers 5 saves them without it, and transformers 4 (Forge's 4.46, WebUI's 4.30) then ignores every weight
    with only a warning and runs a random text encoder.  Both versions load the prefixed layout."""
    from safetensors.torch import load_file, save_file

    weights = load_file(str(path))
    if all(key.startswith(TEXT_MODEL_PREFIX) for key in weights):
        return
    renamed = {(k if k.startswith(TEXT_MODEL_PREFIX) else TEXT_MODEL_PREFIX + k): v for k, v in weights.items()}
    save_file(renamed, str(path), metadata={"format": "pt"})


def build_teacher(
    folder: pathlib.Path = TEACHER_DIR,
    *,
    denoiser_steps: int = 8000,
    vae_steps: int = 3000,
    classifier_steps: int = 1500,
    images: int = 20_000,
    seed: int = 0,
    log: Log = print,
) -> pathlib.Path:
    """Train every part and write the diffusers folder (fp16) to ``folder``, replacing what is there."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from hypersd.distill.models import CONFIGS
    from hypersd.distill.tiny import write_tiny_tokenizer

    staging = folder.with_name(folder.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    vocab = write_tiny_tokenizer(staging / "tokenizer", words=WORDS, max_length=MAX_TOKENS)
    tokenizer = CLIPTokenizer.from_pretrained(str(staging / "tokenizer"), local_files_only=True)
    pixels, labels, captions = make_dataset(images, seed=1234 + seed)
    log(f"Demo teacher: {images} renders, vocabulary {vocab}")
    vae = train_vae(pixels, vae_steps, seed, log)
    classifier = train_classifier(pixels, labels, classifier_steps, seed, log)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_config())
    encoder = CLIPTextModel(CLIPTextConfig(**text_config(vocab)))
    unet, encoder = train_denoiser(unet, encoder, tokenizer, vae, pixels, captions, denoiser_steps, seed, log)
    for name, module in (("unet", unet), ("vae", vae), ("text_encoder", encoder)):
        module.to(torch.float16).save_pretrained(staging / name)
    prefix_text_encoder_keys(staging / "text_encoder" / "model.safetensors")
    shutil.copytree(CONFIGS / "sd15" / "scheduler", staging / "scheduler")
    save_classifier(classifier, staging / CLASSIFIER_FILE)
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.35.0",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
    }
    (staging / "model_index.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    meta = {
        "denoiser_steps": denoiser_steps,
        "vae_steps": vae_steps,
        "classifier_steps": classifier_steps,
        "images": images,
        "seed": seed,
    }
    (staging / "hypersd_demo_teacher.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder
