"""Load an SD1.5 or SDXL model with diffusers, fully offline.

* A diffusers folder (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder*/``, ``tokenizer*/``) loads with
  ``from_pretrained(local_files_only=True)``.
* A single-file ``.safetensors`` as WebUI stores it (ldm/sgm key names) is converted with diffusers' own ldm
  converters against the configs shipped in ``distill/configs/`` (the public SD1.5/SDXL architectures), so no
  config is fetched from the hub. The CLIP tokenizer is not in such a file: it comes from ``--tokenizer`` or
  the local Hugging Face cache, or a message says what to put where.
"""

from __future__ import annotations

import copy
import json
import pathlib
from dataclasses import dataclass, field
from typing import Any

import torch

CONFIGS = pathlib.Path(__file__).resolve().parent / "configs"
CLIP_L_REPO = "openai/clip-vit-large-patch14"
CLIP_BIGG_REPO = "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"


class ModelError(ValueError):
    """A model that cannot be used; the message says why and what to do."""


@dataclass
class SDModel:
    base: str  # "sd15" or "sdxl"
    unet: Any
    vae: Any
    text_encoders: list[Any]
    tokenizers: list[Any]
    source: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def vae_scale(self) -> float:
        return float(self.vae.config.scaling_factor)


# --------------------------------------------------------------------------------------------- detection


def detect_base_from_keys(keys: set[str] | list[str], source: str = "the model") -> str:
    """'sd15' or 'sdxl' from ldm/sgm state-dict key names; ModelError for anything else."""
    keys = set(keys)
    if any(k.startswith("conditioner.embedders.1.") for k in keys) and any(
        k.startswith("model.diffusion_model.label_emb.") for k in keys
    ):
        return "sdxl"
    if any(k.startswith("cond_stage_model.model.transformer.") for k in keys):
        raise ModelError(
            f"Hyper-SD: {source} is an SD2.x model (OpenCLIP-H text encoder); only SD1.5 and SDXL are supported"
        )
    if "model.diffusion_model.input_blocks.0.0.weight" in keys and any(k.startswith("cond_stage_model.") for k in keys):
        return "sd15"
    if any(k.startswith(("lora_unet_", "lora_te")) or ".lora_" in k for k in keys):
        raise ModelError(f"Hyper-SD: {source} is a LoRA, not a base model; pass the SD1.5/SDXL checkpoint as --model")
    if any(k.startswith("model.diffusion_model.") for k in keys):
        raise ModelError(f"Hyper-SD: {source} holds a UNet but no text encoder; a full SD1.5/SDXL checkpoint is needed")
    raise ModelError(f"Hyper-SD: {source} is not a Stable Diffusion checkpoint (no model.diffusion_model.* weights)")


def detect_base_of_diffusers_folder(path: pathlib.Path) -> str:
    unet_cfg = path / "unet" / "config.json"
    if not unet_cfg.is_file():
        raise ModelError(f"Hyper-SD: {path} is not a diffusers model folder (no unet/config.json)")
    cfg = json.loads(unet_cfg.read_text(encoding="utf-8"))
    if cfg.get("addition_embed_type") == "text_time" or (path / "text_encoder_2").is_dir():
        return "sdxl"
    if cfg.get("prediction_type") == "v_prediction" or cfg.get("cross_attention_dim") == 1024:
        raise ModelError(f"Hyper-SD: {path} looks like SD2.x; only SD1.5 and SDXL are supported")
    return "sd15"


def check_base(detected: str, wanted: str, source: str) -> None:
    if wanted not in ("auto", detected):
        raise ModelError(
            f"Hyper-SD: {source} is an {detected.upper()} model but --base {wanted} was asked for "
            f"(SD1.5/SDXL mismatch); use --base {detected} or --base auto"
        )


# --------------------------------------------------------------------------------------------- tokenizers


def _tokenizer_from(folder: pathlib.Path, **kwargs: Any) -> Any:
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True, **kwargs)
    check_tokenizer(tokenizer, str(folder))
    return tokenizer


def check_tokenizer(tokenizer: Any, source: str) -> None:
    """Refuse a tokenizer without a real vocabulary (CLIP has 49408 tokens; transformers may build an empty one)."""
    if len(tokenizer) < 258:
        raise ModelError(
            f"Hyper-SD: the tokenizer from {source} has only {len(tokenizer)} tokens: its vocab.json/merges.txt "
            "are missing or empty"
        )


def find_tokenizers(base: str, tokenizer_dir: str | None) -> list[Any]:
    """The CLIP tokenizer(s) for a single-file model: ``tokenizer_dir`` first, then the local HF cache.

    ``tokenizer_dir`` may hold the files directly (vocab.json, merges.txt) or a diffusers layout
    (tokenizer/, tokenizer_2/). SDXL's second tokenizer is the same BPE with "!" as padding, so the
    first one stands in for it when no tokenizer_2 is found.
    """
    first = second = None
    errors = []
    if tokenizer_dir:
        root = pathlib.Path(tokenizer_dir)
        for candidate in (root / "tokenizer", root):
            if (candidate / "vocab.json").is_file():
                first = _tokenizer_from(candidate)
                break
        if (root / "tokenizer_2" / "vocab.json").is_file():
            second = _tokenizer_from(root / "tokenizer_2")
        if first is None:
            errors.append(f"{root} has no vocab.json (nor tokenizer/vocab.json)")
    if first is None:
        try:
            first = _tokenizer_from_cache(CLIP_L_REPO)
        except Exception as err:  # OSError / EnvironmentError from transformers, varying by version
            errors.append(f"{CLIP_L_REPO} is not in the local Hugging Face cache ({type(err).__name__})")
    if first is None:
        raise ModelError(
            "Hyper-SD: no CLIP tokenizer found for a single-file model ("
            + "; ".join(errors)
            + "). Put vocab.json and merges.txt of openai/clip-vit-large-patch14 into a folder and pass "
            "--tokenizer FOLDER, or point HF_HOME at a cache that holds that repository, or use a diffusers folder."
        )
    if base == "sd15":
        return [first]
    if second is None:
        try:
            second = _tokenizer_from_cache(CLIP_BIGG_REPO)
        except Exception:
            second = copy.deepcopy(first)
            second.pad_token = "!"
    return [first, second]


def _tokenizer_from_cache(repo: str) -> Any:
    """The tokenizer of ``repo`` from the local HF cache only. Looks for the files first: some transformers
    versions return an empty 2-token tokenizer instead of failing when they are missing."""
    from huggingface_hub import try_to_load_from_cache

    vocab = try_to_load_from_cache(repo, "vocab.json")
    merges = try_to_load_from_cache(repo, "merges.txt")
    if not isinstance(vocab, str) or not isinstance(merges, str):
        raise OSError(f"{repo} vocab.json/merges.txt not in the local Hugging Face cache")
    return _tokenizer_from(pathlib.Path(vocab).parent)


# --------------------------------------------------------------------------------------------- loading


def _load_json(path: pathlib.Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def load_diffusers_folder(path: pathlib.Path, base: str, dtype: torch.dtype = torch.float32) -> SDModel:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    def need(sub: str) -> pathlib.Path:
        if not (path / sub).is_dir():
            raise ModelError(f"Hyper-SD: the diffusers folder {path} has no {sub}/ (needed for {base})")
        return path / sub

    kw = {"local_files_only": True, "torch_dtype": dtype}
    unet = UNet2DConditionModel.from_pretrained(str(need("unet")), **kw)
    vae = AutoencoderKL.from_pretrained(str(need("vae")), **kw)
    encoders = [CLIPTextModel.from_pretrained(str(need("text_encoder")), **kw)]
    tokenizers = [_tokenizer_from(need("tokenizer"))]
    if base == "sdxl":
        encoders.append(CLIPTextModelWithProjection.from_pretrained(str(need("text_encoder_2")), **kw))
        tokenizers.append(_tokenizer_from(need("tokenizer_2")))
    return SDModel(base, unet, vae, encoders, tokenizers, str(path))


def _align_text_model_prefix(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """CLIP text-model keys are ``text_model.*`` in transformers 4 (and in every ldm/WebUI checkpoint:
    ``cond_stage_model.transformer.text_model.*``) but have no ``text_model.`` prefix in transformers 5:
    give the converted keys the form this transformers version expects."""
    prefix = "text_model."
    has = any(k.startswith(prefix) for k in state)
    wants = any(k.startswith(prefix) for k in expected)
    if has and not wants:
        return {k.removeprefix(prefix): v for k, v in state.items()}
    if wants and not has:
        return {(k if k in expected else prefix + k): v for k, v in state.items()}
    return state


def _instantiate(
    cls: Any, config: dict[str, Any], state: dict[str, torch.Tensor], what: str, dtype: torch.dtype
) -> Any:
    """Build ``cls`` from config without allocating random weights, then load ``state`` (missing weights refused)."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = cls.from_config(config) if hasattr(cls, "from_config") else cls(config)
    expected = {name for name, _ in model.named_parameters()}
    state = _align_text_model_prefix(state, expected)
    missing = sorted(expected - set(state))
    if missing:
        raise ModelError(f"Hyper-SD: the checkpoint lacks {len(missing)} {what} weights, e.g. {missing[:3]}")
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False, assign=True)
    return model.to(dtype)


def load_single_file(
    path: pathlib.Path,
    base: str,
    tokenizer_dir: str | None = None,
    dtype: torch.dtype = torch.float32,
    checkpoint: dict[str, torch.Tensor] | None = None,
    configs: pathlib.Path | None = None,
) -> SDModel:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders import single_file_utils as sfu
    from safetensors.torch import load_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizers = find_tokenizers(base, tokenizer_dir)  # fail fast, before reading gigabytes
    if checkpoint is None:
        checkpoint = load_file(str(path))
    folder = (configs or CONFIGS) / base
    unet_cfg = _load_json(folder / "unet" / "config.json")
    vae_cfg = _load_json(folder / "vae" / "config.json")
    unet = _instantiate(
        UNet2DConditionModel, unet_cfg, sfu.convert_ldm_unet_checkpoint(checkpoint, unet_cfg), "UNet", dtype
    )
    vae = _instantiate(AutoencoderKL, vae_cfg, sfu.convert_ldm_vae_checkpoint(checkpoint, vae_cfg), "VAE", dtype)
    te_cfg = CLIPTextConfig.from_dict(_load_json(folder / "text_encoder" / "config.json"))
    encoders = [_instantiate(CLIPTextModel, te_cfg, sfu.convert_ldm_clip_checkpoint(checkpoint), "text encoder", dtype)]
    if base == "sdxl":
        te2_cfg = CLIPTextConfig.from_dict(_load_json(folder / "text_encoder_2" / "config.json"))
        from accelerate import init_empty_weights

        with init_empty_weights():
            probe = CLIPTextModelWithProjection(te2_cfg)
        state2 = sfu.convert_open_clip_checkpoint(probe, checkpoint, prefix="conditioner.embedders.1.model.")
        encoders.append(_instantiate(CLIPTextModelWithProjection, te2_cfg, state2, "second text encoder", dtype))
    return SDModel(base, unet, vae, encoders, tokenizers, str(path))


def load_model(
    path: str | pathlib.Path, base: str = "auto", tokenizer_dir: str | None = None, dtype: torch.dtype = torch.float32
) -> SDModel:
    """Load SD1.5/SDXL from a diffusers folder or a single .safetensors file; nothing is downloaded."""
    path = pathlib.Path(path)
    if not path.exists():
        raise ModelError(f"Hyper-SD: model not found: {path}")
    if path.is_dir():
        detected = detect_base_of_diffusers_folder(path)
        check_base(detected, base, str(path))
        model = load_diffusers_folder(path, detected, dtype)
    else:
        if path.suffix.lower() != ".safetensors":
            raise ModelError(f"Hyper-SD: {path} must be a .safetensors file (pickled .ckpt files are not loaded)")
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                keys = set(handle.keys())
        except Exception as err:
            raise ModelError(f"Hyper-SD: cannot read {path} as safetensors: {err}") from err
        detected = detect_base_from_keys(keys, str(path))
        check_base(detected, base, str(path))
        model = load_single_file(path, detected, tokenizer_dir, dtype)
    for module in (model.unet, model.vae, *model.text_encoders):
        module.requires_grad_(False)
        module.eval()
    return model


# --------------------------------------------------------------------------------------------- conditioning


@torch.no_grad()
def encode_prompts(model: SDModel, prompts: list[str], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Text conditioning as the UNet wants it: ``encoder_hidden_states`` (+ SDXL's pooled ``text_embeds``).

    SD1.5: the last hidden state of CLIP-L. SDXL: penultimate hidden states of both encoders concatenated,
    and the pooled projection of the second (as diffusers' StableDiffusionXLPipeline does).
    """
    hidden, pooled = [], None
    for tokenizer, encoder in zip(model.tokenizers, model.text_encoders, strict=True):
        ids = tokenizer(
            prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(device)
        out = encoder(ids, output_hidden_states=True)
        if model.base == "sd15":
            hidden.append(out[0])
        else:
            hidden.append(out.hidden_states[-2])
            pooled = out[0] if out[0].ndim == 2 else pooled
    cond = {"encoder_hidden_states": torch.cat(hidden, dim=-1)}
    if model.base == "sdxl":
        cond["text_embeds"] = pooled
    return cond


def sdxl_time_ids(orig_hw: tuple[int, int], crop_tl: tuple[int, int], target_hw: tuple[int, int]) -> torch.Tensor:
    """SDXL micro-conditioning: (orig h, orig w, crop top, crop left, target h, target w)."""
    return torch.tensor([*orig_hw, *crop_tl, *target_hw], dtype=torch.float32)


#: latent pixels (rows x latent height x width) per batched no-gradient UNet or VAE call (the quality report's
#: sampling, the score-distillation warm-up's trajectories): 32 images of SD1.5 at 512², 8 of SDXL at 1024² (bounds
#: memory on big models); a small model's rows all go in one call (on a CPU its cost is per call, not per row)
CALL_LATENT_PIXELS = 32 * 64 * 64


def rows_per_call(latents: torch.Tensor) -> int:
    """Rows per batched call for latents shaped (N, C, H, W)."""
    return max(1, CALL_LATENT_PIXELS // (latents.shape[-2] * latents.shape[-1]))


def unet_eps(unet: Any, x: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
    """eps = UNet(x, t, cond) with a conditioning dict from :func:`encode_prompts` (+ ``time_ids`` for SDXL)."""
    added = {k: cond[k] for k in ("text_embeds", "time_ids") if k in cond}
    dtype = next(p.dtype for p in unet.parameters() if p.dtype.is_floating_point)
    hidden = cond["encoder_hidden_states"].to(dtype)
    kwargs = {"added_cond_kwargs": {k: v.to(dtype) for k, v in added.items()}} if added else {}
    return unet(x.to(dtype), t, encoder_hidden_states=hidden, **kwargs).sample.to(x.dtype)
