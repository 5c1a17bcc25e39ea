"""Reward models behind one interface: the feedback stage's reward and the quality report's prompt-fidelity score.

A model is named ``KIND:PATH`` (``--reward``, ``--report-scorer``); nothing is ever downloaded: PATH is a local
folder or file, or a hub repository id already in the local Hugging Face cache (``local_files_only``).

========== ============================================================ ================================ ======
kind       PATH                                                         reward (higher is better)        alpha
========== ============================================================ ================================ ======
demo       the demo teacher's ``classifier.safetensors``                 log p(shape) + log p(colour)     0
clip       a CLIP model folder (transformers ``CLIPModel``)              100 · cos(image, text)           30
pickscore  PickScore_v1's folder[,its processor folder (CLIP-H)]         logit_scale · cos(image, text)   22
aesthetic  CLIP ViT-L/14 folder,LAION aesthetic MLP (.pth/.safetensors)  the predicted aesthetic score    6
imagereward ImageReward.pt,med_config.json (needs ``image-reward``)      ImageReward's normalised score   2
hpsv2      HPS_v2(.1) checkpoint .pt (needs ``hpsv2``, open_clip ViT-H)  100 · cos(image, text)           28
========== ============================================================ ================================ ======

alpha is the default hinge threshold of ReFL's ``ReLU(alpha - reward)``: ImageReward's 2 is ReFL's own
(arXiv 2304.05977, its released training code); the others are our choice, a little above the typical score of a
good image for that model. Every model is loaded and run once on a blank image by ``check`` before training, so
a missing file, a package that is not installed or a wrong file is refused with a message, not at step 1000.
"""

from __future__ import annotations

import pathlib
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

#: OpenAI CLIP's image normalisation (CLIP, PickScore, the aesthetic predictor, ImageReward's BLIP, HPS v2)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class RewardError(ValueError):
    """A reward model that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class KindInfo:
    alpha: float
    usage: str


KINDS: dict[str, KindInfo] = {
    "demo": KindInfo(0.0, "demo:PATH/classifier.safetensors"),
    "clip": KindInfo(30.0, "clip:FOLDER (a transformers CLIPModel, e.g. openai/clip-vit-large-patch14)"),
    "pickscore": KindInfo(22.0, "pickscore:FOLDER[,PROCESSOR_FOLDER] (yuvalkirstain/PickScore_v1)"),
    "aesthetic": KindInfo(6.0, "aesthetic:CLIP_L14_FOLDER,MLP_FILE (LAION improved aesthetic predictor)"),
    "imagereward": KindInfo(2.0, "imagereward:ImageReward.pt,med_config.json (pip install image-reward)"),
    "hpsv2": KindInfo(28.0, "hpsv2:HPS_v2.1_compressed.pt (pip install hpsv2)"),
}


def parse_spec(spec: str) -> tuple[str, list[str]]:
    kind, sep, rest = (spec or "").partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in KINDS or not rest.strip():
        usage = "; ".join(info.usage for info in KINDS.values())
        raise RewardError(f"Hyper-SD: reward model {spec!r} is not KIND:PATH; the kinds are: {usage}")
    return kind, [part.strip() for part in rest.split(",")]


def pixels_for_clip(images: torch.Tensor, size: int) -> torch.Tensor:
    """[-1, 1] images -> CLIP's input: resized (bicubic, antialiased; differentiable) and normalised."""
    x = (images.float() + 1) / 2
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class RewardModel(torch.nn.Module):
    """``reward(images in [-1, 1], prompts) -> [B]`` (differentiable in the images), ``features(images) -> [B, D]``."""

    kind = ""

    def reward(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def features(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def fidelity(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """Per image: how well it shows its prompt (the report's prompt-fidelity column); default the reward."""
        return self.reward(images, prompts)

    def unreadable(self, prompts: list[str]) -> list[str]:
        """The prompts this model cannot score (most read any text; the demo classifier only its captions)."""
        return []

    #: what to do when :meth:`unreadable` names some
    unreadable_hint = ""

    @property
    def alpha(self) -> float:
        return KINDS[self.kind].alpha


class DemoReward(RewardModel):
    """The demo's shape/colour classifier: fidelity = both read back right; reward = their log-probability."""

    kind = "demo"

    def __init__(self, path: str):
        super().__init__()
        from hypersd.demo.classifier import load_classifier

        self.net = load_classifier(pathlib.Path(path))

    unreadable_hint = (
        "it reads only the demo's captions (one colour and one shape, e.g. 'a red circle'); for your own captions "
        "use a CLIP-type reward model, e.g. --reward clip:FOLDER"
    )

    def unreadable(self, prompts: list[str]) -> list[str]:
        from hypersd.demo.domain import parse_caption

        return [p for p in prompts if parse_caption(p) is None]

    def _labels(self, prompts: list[str]) -> list[Any]:
        from hypersd.demo.domain import parse_caption

        missing = self.unreadable(prompts)
        if missing:
            raise RewardError(
                f"Hyper-SD: the demo classifier cannot read the prompt {missing[0]!r}: {self.unreadable_hint}"
            )
        return [parse_caption(p) for p in prompts]

    def reward(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return self.net.log_prob(images.float(), self._labels(prompts))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.features(images.float())

    @torch.no_grad()
    def fidelity(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return self.net.matches(images.float(), self._labels(prompts))


class ClipReward(RewardModel):
    """CLIP score (clip), PickScore (pickscore) and the LAION aesthetic predictor (aesthetic) on transformers' CLIP."""

    def __init__(self, kind: str, model_path: str, processor_path: str | None = None, mlp_path: str | None = None):
        super().__init__()
        from transformers import CLIPModel, CLIPTokenizer

        self.kind = kind
        self.model = CLIPModel.from_pretrained(model_path, local_files_only=True).eval().requires_grad_(False)
        self.tokenizer = CLIPTokenizer.from_pretrained(processor_path or model_path, local_files_only=True)
        self.size = int(self.model.config.vision_config.image_size)
        self.mlp = _load_aesthetic_mlp(mlp_path, self.model.config.projection_dim) if mlp_path else None

    def image_embeds(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model.get_image_features(pixel_values=pixels_for_clip(images, self.size).to(self.model.dtype))
        out = out if isinstance(out, torch.Tensor) else out.pooler_output  # transformers 5 may return an output object
        return F.normalize(out.float(), dim=-1)

    def text_embeds(self, prompts: list[str], device: Any) -> torch.Tensor:
        ids = self.tokenizer(prompts, padding=True, truncation=True, max_length=77, return_tensors="pt").to(device)
        out = self.model.get_text_features(**ids)
        out = out if isinstance(out, torch.Tensor) else out.pooler_output
        return F.normalize(out.float(), dim=-1)

    def reward(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        image = self.image_embeds(images)
        if self.mlp is not None:
            return self.mlp(image)[:, 0]
        cos = (image * self.text_embeds(prompts, images.device)).sum(-1)
        scale = self.model.logit_scale.exp() if self.kind == "pickscore" else 100.0
        return scale * cos

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_embeds(images)


def _load_aesthetic_mlp(path: str, dim: int) -> torch.nn.Module:
    """LAION's improved aesthetic predictor head: 768 -> 1024 -> 128 -> 64 -> 16 -> 1 (dropouts between)."""
    mlp = torch.nn.Sequential(
        torch.nn.Linear(dim, 1024), torch.nn.Dropout(0.2), torch.nn.Linear(1024, 128), torch.nn.Dropout(0.2),
        torch.nn.Linear(128, 64), torch.nn.Dropout(0.1), torch.nn.Linear(64, 16), torch.nn.Linear(16, 1),
    )  # fmt: skip
    file = pathlib.Path(path)
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(file))
    else:
        state = torch.load(str(file), map_location="cpu", weights_only=True)
    state = {k.removeprefix("layers."): v for k, v in state.items()}
    try:
        mlp.load_state_dict(state)
    except RuntimeError as err:
        raise RewardError(
            f"Hyper-SD: {path} is not the LAION aesthetic MLP for {dim}-d CLIP embeddings: {err}"
        ) from err
    return mlp.eval().requires_grad_(False)


class ImageRewardModel(RewardModel):
    """ImageReward (BLIP + MLP) through the ``image-reward`` package's differentiable ``score_gard``."""

    kind = "imagereward"

    def __init__(self, checkpoint: str, med_config: str | None):
        super().__init__()
        module = _import("ImageReward", "image-reward")
        if not med_config:
            raise RewardError(
                "Hyper-SD: imagereward needs its med_config.json too: imagereward:ImageReward.pt,med_config.json"
            )
        self.model = module.load(checkpoint, device="cpu", med_config=med_config).eval().requires_grad_(False)

    def reward(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        text = self.model.blip.tokenizer(
            prompts, padding="max_length", truncation=True, max_length=35, return_tensors="pt"
        )
        text = text.to(images.device)
        self.model.device = images.device
        out = self.model.score_gard(text.input_ids, text.attention_mask, pixels_for_clip(images, 224))
        return out.reshape(-1).float()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.blip.visual_encoder(pixels_for_clip(images, 224))[:, 0].float()


class HPSv2Reward(RewardModel):
    """HPS v2 / v2.1 (an open_clip ViT-H-14 fine-tuned on human preferences) from its checkpoint file."""

    kind = "hpsv2"

    def __init__(self, checkpoint: str):
        super().__init__()
        open_clip = _import("hpsv2.src.open_clip", "hpsv2")
        model, _, _ = open_clip.create_model_and_transforms("ViT-H-14", None, device="cpu", output_dict=True)
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state.get("state_dict", state))
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer("ViT-H-14")

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_image(pixels_for_clip(images, 224)).float(), dim=-1)

    def reward(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        text = F.normalize(self.model.encode_text(self.tokenizer(prompts).to(images.device)).float(), dim=-1)
        return 100.0 * (self.features(images) * text).sum(-1)


def _import(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise RewardError(
            f"Hyper-SD: this reward model needs the {package!r} package: pip install {package} ({err})"
        ) from err


def _need(path: str, what: str, repo_ok: bool = False) -> str:
    """``path`` when it exists (or, with ``repo_ok``, looks like a hub repository id to find in the local cache)."""
    local = pathlib.Path(path).expanduser()
    if local.exists():
        return str(local)
    if repo_ok and re.fullmatch(r"[\w.-]+/[\w.-]+", path):
        return path
    raise RewardError(f"Hyper-SD: {what} {path!r} does not exist; give a local file or folder (nothing is downloaded)")


def load_reward(spec: str) -> RewardModel:
    """The reward model ``KIND:PATH`` names; RewardError with what to do when it cannot be loaded."""
    kind, parts = parse_spec(spec)
    try:
        if kind == "demo":
            return DemoReward(_need(parts[0], "the demo classifier"))
        if kind in ("clip", "pickscore"):
            processor = _need(parts[1], "the processor folder", True) if len(parts) > 1 else None
            return ClipReward(kind, _need(parts[0], "the CLIP model", True), processor)
        if kind == "aesthetic":
            if len(parts) < 2:
                raise RewardError(f"Hyper-SD: aesthetic needs a CLIP folder and the MLP file: {KINDS[kind].usage}")
            return ClipReward(kind, _need(parts[0], "the CLIP model", True), None, _need(parts[1], "the aesthetic MLP"))
        if kind == "imagereward":
            med = _need(parts[1], "med_config.json") if len(parts) > 1 else None
            return ImageRewardModel(_need(parts[0], "the ImageReward checkpoint"), med)
        return HPSv2Reward(_need(parts[0], "the HPS v2 checkpoint"))
    except RewardError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise RewardError(f"Hyper-SD: the {kind} reward model {spec!r} does not load: {err}") from err


def check_reward(spec: str, size: int = 64, prompts: list[str] | tuple[str, ...] = ()) -> RewardModel:
    """Load the model and score one blank image, and check that it can score every one of ``prompts`` (the run's
    captions), so that a wrong file or prompt fails here and not during training."""
    model = load_reward(spec)
    unreadable = model.unreadable(list(dict.fromkeys(prompts)))
    if unreadable:
        raise RewardError(
            f"Hyper-SD: the {model.kind} reward model {spec!r} cannot score {len(unreadable)} of the run's captions, "
            f"e.g. {unreadable[0]!r}: {model.unreadable_hint}"
        )
    prompt = "a red circle" if model.kind == "demo" else "a photo"
    try:
        with torch.no_grad():
            value = model.reward(torch.zeros(1, 3, size, size), [prompt])
            feats = model.features(torch.zeros(1, 3, size, size))
    except Exception as err:  # a wrong model fails in many ways (shape, dtype, missing attribute)
        raise RewardError(f"Hyper-SD: the {model.kind} reward model {spec!r} loads but does not run: {err}") from err
    if value.shape != (1,) or feats.ndim != 2 or not torch.isfinite(value).all():
        raise RewardError(
            f"Hyper-SD: the {model.kind} reward model {spec!r} returned {tuple(value.shape)}, not one score per image"
        )
    return model
