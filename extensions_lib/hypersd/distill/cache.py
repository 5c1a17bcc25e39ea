"""Cached training data: VAE latents and text embeddings computed once, and bucketed batches drawn from them."""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from hypersd import tscd

from .config import DistillConfig
from .data import Dataset, load_image, make_buckets, nearest_bucket, validate_images
from .models import SDModel, encode_prompts, sdxl_time_ids, unet_eps


@dataclass
class CachedData:
    latents: list[torch.Tensor]  # one (C, h, w) float32 tensor per sample, CPU
    caption_index: list[int]  # sample -> row of hidden
    hidden: torch.Tensor  # (n_captions, L, D)
    pooled: torch.Tensor | None  # (n_captions, D2) SDXL
    time_ids: list[torch.Tensor | None]  # per sample (SDXL)
    buckets: dict[tuple[int, int], list[int]]  # latent (h, w) -> sample indices
    uncond_hidden: torch.Tensor  # (1, L, D)
    uncond_pooled: torch.Tensor | None
    sample_cond: dict[str, torch.Tensor] = field(default_factory=dict)
    sample_prompts: list[str] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)  # the text of each row of hidden


def vae_factor(model: SDModel) -> int:
    return 2 ** (len(model.vae.config.block_out_channels) - 1)


@dataclass
class _Latents:
    """What the two data kinds produce: one latent per sample, its SDXL time ids, its bucket and caption row."""

    latents: list[torch.Tensor] = field(default_factory=list)
    time_ids: list[torch.Tensor | None] = field(default_factory=list)
    buckets: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    caption_index: list[int] = field(default_factory=list)

    def add(self, latent: torch.Tensor, tid: torch.Tensor | None, row: int) -> None:
        self.latents.append(latent)
        self.time_ids.append(tid)
        self.caption_index.append(row)
        self.buckets.setdefault(tuple(latent.shape[1:]), []).append(len(self.latents) - 1)


class _Text(NamedTuple):
    """The encoded captions a prompts-only dataset samples the teacher with."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None
    uncond: dict[str, torch.Tensor]
    caption_row: dict[str, int]


def _encode_captions(
    model: SDModel, captions: list[str], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Text embeddings of every caption (16 at a time), on the CPU: hidden states and SDXL's pooled ones."""
    hidden_rows, pooled_rows = [], []
    for start in range(0, len(captions), 16):
        enc = encode_prompts(model, captions[start : start + 16], device)
        hidden_rows.append(enc["encoder_hidden_states"].float().cpu())
        if "text_embeds" in enc:
            pooled_rows.append(enc["text_embeds"].float().cpu())
    return torch.cat(hidden_rows), (torch.cat(pooled_rows) if pooled_rows else None)


def _teacher_latents(
    model: SDModel,
    dataset: Dataset,
    cfg: DistillConfig,
    text: _Text,
    device: torch.device,
    acp: torch.Tensor,
    log: Callable,
) -> _Latents:
    """A prompts-only dataset: ``synth_per_prompt`` guided DDIM samples of the teacher per caption."""
    hidden, pooled, un, caption_row = text
    res, sdxl = int(cfg.resolution), model.base == "sdxl"
    gen = torch.Generator().manual_seed(cfg.seed + 7777)
    omega = 0.5 * (cfg.omega_min + cfg.omega_max)
    size = res // vae_factor(model)
    out = _Latents()
    for i, sample in enumerate(dataset.samples):
        row = caption_row[sample.caption]
        for _ in range(cfg.synth_per_prompt):
            tid = sdxl_time_ids((res, res), (0, 0), (res, res)) if sdxl else None
            cond = {"encoder_hidden_states": hidden[row : row + 1].to(device)}
            uncond = {"encoder_hidden_states": un["encoder_hidden_states"].to(device)}
            if sdxl:
                cond.update(text_embeds=pooled[row : row + 1].to(device), time_ids=tid[None].to(device))
                uncond.update(text_embeds=un["text_embeds"].to(device), time_ids=tid[None].to(device))
            noise = torch.randn((1, model.unet.config.in_channels, size, size), generator=gen).to(device)
            x0 = tscd.guided_ddim_sample(
                lambda x, t, c: unet_eps(model.unet, x, t, c), noise, cond, uncond, cfg.synth_steps, omega, acp
            )
            out.add(x0[0].float().cpu(), tid, row)
        if i % 50 == 0:
            log({"event": "cache", "what": "teacher latents", "done": i + 1, "of": len(dataset.samples)})
    return out


def _image_latents(
    model: SDModel, dataset: Dataset, cfg: DistillConfig, caption_row: dict, device: torch.device, log: Callable
) -> _Latents:
    """An image dataset: each image resized into its nearest bucket and VAE-encoded once (kohya repeats reuse it)."""
    sizes = validate_images(dataset)
    res, sdxl = int(cfg.resolution), model.base == "sdxl"
    bucket_list = make_buckets(res) if cfg.buckets else [(res, res)]
    encoded: dict[pathlib.Path, int] = {}
    vae_dtype = next(model.vae.parameters()).dtype
    out = _Latents()
    for i, sample in enumerate(dataset.samples):
        row = caption_row[sample.caption]
        if sample.image in encoded:  # kohya repeats: reuse the latent
            j = encoded[sample.image]
            out.add(out.latents[j], out.time_ids[j], row)
        else:
            w, h = sizes[sample.image]
            bw, bh = nearest_bucket(w, h, bucket_list)
            pixels, orig_hw, crop_tl = load_image(sample.image, (bw, bh))
            dist = model.vae.encode(pixels[None].to(device, vae_dtype)).latent_dist
            tid = sdxl_time_ids(orig_hw, crop_tl, (bh, bw)) if sdxl else None
            out.add((dist.mean * model.vae_scale).float()[0].cpu(), tid, row)
            encoded[sample.image] = i
        if i % 50 == 0:
            log({"event": "cache", "what": "VAE latents", "done": i + 1, "of": len(dataset.samples)})
    return out


@torch.no_grad()
def build_cache(
    model: SDModel, dataset: Dataset, cfg: DistillConfig, device: torch.device, acp: torch.Tensor, log: Callable
) -> CachedData:
    """VAE latents and text embeddings, computed once (they dominate the cost otherwise)."""
    captions = sorted(set(dataset.captions))
    caption_row = {c: i for i, c in enumerate(captions)}
    hidden, pooled = _encode_captions(model, captions, device)
    un = encode_prompts(model, [""], device)
    if dataset.kind == "prompts":
        made = _teacher_latents(model, dataset, cfg, _Text(hidden, pooled, un, caption_row), device, acp, log)
    else:
        made = _image_latents(model, dataset, cfg, caption_row, device, log)
    prompts = list(cfg.sample_prompts) or captions[:4]
    sample_cond = encode_prompts(model, prompts, device) if prompts else {}
    return CachedData(
        latents=made.latents,
        caption_index=made.caption_index,
        hidden=hidden,
        pooled=pooled,
        time_ids=made.time_ids,
        buckets=made.buckets,
        uncond_hidden=un["encoder_hidden_states"].float().cpu(),
        uncond_pooled=un["text_embeds"].float().cpu() if "text_embeds" in un else None,
        sample_cond={k: v.float().cpu() for k, v in sample_cond.items()},
        sample_prompts=prompts,
        captions=captions,
    )


def sample_batch(
    cache: CachedData, batch: int, gen: torch.Generator, device: torch.device, prompts: list[str] | None = None
) -> tuple[torch.Tensor, dict, dict]:
    """A batch from one aspect bucket: draw a sample uniformly, then the rest from its bucket (with replacement).

    ``prompts``, when given, receives the batch's caption texts (the feedback stage's reward needs them)."""
    first = int(torch.randint(len(cache.latents), (1,), generator=gen))
    shape = tuple(cache.latents[first].shape[1:])
    members = cache.buckets[shape]
    picks = [first] + [members[int(i)] for i in torch.randint(len(members), (batch - 1,), generator=gen)]
    x0 = torch.stack([cache.latents[i] for i in picks]).to(device)
    rows = torch.tensor([cache.caption_index[i] for i in picks])
    if prompts is not None:
        prompts.extend(cache.captions[int(r)] for r in rows)
    cond = {"encoder_hidden_states": cache.hidden[rows].to(device)}
    uncond = {"encoder_hidden_states": cache.uncond_hidden.expand(batch, -1, -1).to(device)}
    if cache.pooled is not None:
        tids = torch.stack([cache.time_ids[i] for i in picks]).to(device)
        cond.update(text_embeds=cache.pooled[rows].to(device), time_ids=tids)
        uncond.update(text_embeds=cache.uncond_pooled.expand(batch, -1).to(device), time_ids=tids)
    return x0, cond, uncond
