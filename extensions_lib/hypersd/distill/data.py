"""Training data: discovery, validation and aspect buckets (no model needed here).

Accepted layouts (TSCD.md "Data"):

* a folder of images with same-name ``.txt`` or ``.caption`` captions;
* kohya-style ``N_name/`` repeat folders (each image counts N times; a missing caption falls back to
  ``name``, the folder's class token, as kohya's trainer does);
* a folder with ``metadata.jsonl`` lines ``{"file_name": ..., "text": ...}`` (the HF imagefolder layout);
* a prompt list (a ``.txt`` file, one prompt per line, ``#`` comments): noise-only distillation.

Every problem is found before training starts and named with its file.
"""

from __future__ import annotations

import json
import math
import pathlib
import re
from dataclasses import dataclass

import torch

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CAPTION_EXTENSIONS = (".txt", ".caption")
_KOHYA_FOLDER = re.compile(r"^(\d+)_(.+)$")


class DataError(ValueError):
    """Unusable training data; the message names the file and says what to do."""


@dataclass(frozen=True)
class Sample:
    image: pathlib.Path | None  # None in prompt-list mode
    caption: str


@dataclass
class Dataset:
    samples: list[Sample]
    kind: str  # "images" or "prompts"
    source: str

    @property
    def captions(self) -> list[str]:
        return [s.caption for s in self.samples]


def read_prompt_list(path: pathlib.Path) -> Dataset:
    lines = path.read_text(encoding="utf-8").splitlines()
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise DataError(f"Hyper-SD: the prompt list {path} holds no prompts (one prompt per line)")
    return Dataset([Sample(None, p) for p in prompts], "prompts", str(path))


def _caption_for(image: pathlib.Path) -> str | None:
    for ext in CAPTION_EXTENSIONS:
        cap = image.with_suffix(ext)
        if cap.is_file():
            return cap.read_text(encoding="utf-8").strip()
    return None


def _images_in(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _read_metadata_jsonl(folder: pathlib.Path) -> list[Sample]:
    meta = folder / "metadata.jsonl"
    samples = []
    for number, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"Hyper-SD: {meta} line {number} is not valid JSON: {err}") from err
        name = row.get("file_name")
        text = row.get("text", row.get("caption"))
        if not name:
            raise DataError(f'Hyper-SD: {meta} line {number} has no "file_name"')
        if text is None:
            raise DataError(f'Hyper-SD: {meta} line {number} ({name}) has no "text" caption')
        image = folder / name
        if not image.is_file():
            raise DataError(f"Hyper-SD: {meta} line {number} names {image}, which does not exist")
        samples.append(Sample(image, str(text).strip()))
    return samples


def _read_kohya(folder: pathlib.Path, subfolders: list[pathlib.Path]) -> list[Sample]:
    samples = []
    for sub in subfolders:
        match = _KOHYA_FOLDER.match(sub.name)
        repeats, class_token = int(match.group(1)), match.group(2).replace("_", " ")
        for image in _images_in(sub):
            caption = _caption_for(image)
            samples += [Sample(image, class_token if caption is None else caption)] * max(repeats, 1)
    return samples


def _read_plain(folder: pathlib.Path) -> list[Sample]:
    samples = []
    for image in _images_in(folder):
        caption = _caption_for(image)
        if caption is None:
            raise DataError(
                f"Hyper-SD: no caption for {image}: write one into {image.with_suffix('.txt')} "
                "(or use a kohya N_name/ folder, whose name is the fallback caption)"
            )
        samples.append(Sample(image, caption))
    return samples


def discover_dataset(path: str | pathlib.Path) -> Dataset:
    """Find the samples of a dataset at ``path`` (layouts in the module docstring); raise DataError if unusable."""
    path = pathlib.Path(path)
    if not path.exists():
        raise DataError(f"Hyper-SD: training data not found: {path}")
    if path.is_file():
        if path.name == "metadata.jsonl":
            return discover_dataset(path.parent)
        if path.suffix.lower() in (".txt", ".prompts"):
            return read_prompt_list(path)
        raise DataError(f"Hyper-SD: {path} is neither a folder of images nor a prompt list (.txt)")
    if (path / "metadata.jsonl").is_file():
        samples, kind = _read_metadata_jsonl(path), "metadata.jsonl"
    else:
        kohya = sorted(p for p in path.iterdir() if p.is_dir() and _KOHYA_FOLDER.match(p.name))
        samples, kind = (_read_kohya(path, kohya), "kohya") if kohya else (_read_plain(path), "folder")
    if not samples:
        raise DataError(
            f"Hyper-SD: no training images in {path} (looked for {', '.join(IMAGE_EXTENSIONS)} "
            f"{'in its N_name/ folders' if kind == 'kohya' else 'in the folder itself'})"
        )
    return Dataset(samples, "images", str(path))


def validate_images(dataset: Dataset) -> dict[pathlib.Path, tuple[int, int]]:
    """Open every image once; return its (width, height). Raise DataError naming the first unreadable one."""
    from PIL import Image

    sizes: dict[pathlib.Path, tuple[int, int]] = {}
    for sample in dataset.samples:
        if sample.image is None or sample.image in sizes:
            continue
        try:
            with Image.open(sample.image) as img:
                img.verify()
            with Image.open(sample.image) as img:
                img.load()
                sizes[sample.image] = img.size
        except Exception as err:  # PIL raises many types for broken files
            raise DataError(f"Hyper-SD: cannot read image {sample.image}: {err}. Fix or remove it.") from err
        if min(sizes[sample.image]) < 8:
            raise DataError(f"Hyper-SD: image {sample.image} is too small ({sizes[sample.image]})")
    return sizes


# --------------------------------------------------------------------------------------------- buckets


def make_buckets(resolution: int, step: int = 64, max_ratio: float = 2.0) -> list[tuple[int, int]]:
    """(width, height) pairs, multiples of ``step``, area at most resolution², aspect within [1/max_ratio, max_ratio]."""
    area = resolution * resolution
    buckets = set()
    width = step
    while width <= resolution * max_ratio:
        height = (area // width) // step * step
        if height >= step and 1 / max_ratio <= width / height <= max_ratio:
            buckets.add((width, height))
            buckets.add((height, width))
        width += step
    return sorted(buckets)


def nearest_bucket(width: int, height: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket closest in log aspect ratio, ties to the larger area."""
    ratio = math.log(width / height)
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - ratio), -b[0] * b[1]))


def load_image(path: pathlib.Path, size: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
    """Resize to cover ``size`` (w, h), centre-crop; return a [-1, 1] CHW tensor, the original (h, w) and crop (top, left).

    The original size and crop offsets are SDXL's micro-conditioning (``time_ids``).
    """
    import numpy as np
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        orig_w, orig_h = img.size
        scale = max(size[0] / orig_w, size[1] / orig_h)
        new_w, new_h = max(size[0], round(orig_w * scale)), max(size[1], round(orig_h * scale))
        img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
        left, top = (new_w - size[0]) // 2, (new_h - size[1]) // 2
        img = img.crop((left, top, left + size[0], top + size[1]))
        array = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous(), (orig_h, orig_w), (top, left)
