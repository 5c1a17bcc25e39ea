"""The Train tab's data preview: what the engine will see, and every problem at once, before anything starts.

Uses the engine's own rules (hypersd.distill.data: the layouts, image and caption extensions, caption lookup and
kohya folder names) but lists every unreadable image and every missing caption instead of stopping at the first.
Refusals (the engine would stop, or the run would be wrong) are ``errors``; doubts are ``warnings``.
"""

from __future__ import annotations

import pathlib
import statistics
from dataclasses import dataclass, field

MAX_LISTED = 20  # problem lines shown; the rest are counted
SD15_MAX_RESOLUTION = 768
SDXL_MIN_RESOLUTION = 768
FEW_IMAGES = 10
MIN_SIDE = 8  # hypersd.distill.data.validate_images refuses smaller images
#: Image formats the engine does not read (hypersd.distill.data.IMAGE_EXTENSIONS): named so they are not missed.
OTHER_IMAGE_EXTENSIONS = (".gif", ".tif", ".tiff", ".avif", ".heic", ".heif", ".jxl", ".jfif")


@dataclass(frozen=True)
class SizeSummary:
    min_width: int
    median_width: int
    max_width: int
    min_height: int
    median_height: int
    max_height: int


@dataclass
class DatasetReport:
    path: str
    kind: str | None = None  # "folder" | "kohya" | "metadata.jsonl" | "prompts"; None when unreadable
    images: int = 0  # distinct image files
    samples: int = 0  # training samples (kohya repeats count; prompts in a prompt list)
    captioned: int = 0  # images with a caption of their own (file or metadata), not a class-token fallback
    prompts: int = 0
    problems: list[str] = field(default_factory=list)  # one line per file, at most MAX_LISTED + a count
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)  # of the readable images
    heights: list[int] = field(default_factory=list)
    thumbnails: list[pathlib.Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def sizes(self) -> SizeSummary | None:
        if not self.widths:
            return None
        w, h = self.widths, self.heights
        return SizeSummary(
            min(w), int(statistics.median(w)), max(w), min(h), int(statistics.median(h)), max(h)
        )  # fmt: skip


def _listed(lines: list[str]) -> list[str]:
    if len(lines) <= MAX_LISTED:
        return lines
    return [*lines[:MAX_LISTED], f"… and {len(lines) - MAX_LISTED} more"]


def _names(paths: list[pathlib.Path], root: pathlib.Path, shown: int = 5) -> str:
    names = [_display(p, root) for p in paths[:shown]]
    return ", ".join(names) + (f", … ({len(paths) - shown} more)" if len(paths) > shown else "")


def _display(path: pathlib.Path, root: pathlib.Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def image_problem(path: pathlib.Path) -> tuple[str | None, tuple[int, int] | None]:
    """(what is wrong, None) or (None, (width, height)): the engine's validate_images test, without raising."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            img.load()
            size = img.size
    except Exception as err:  # noqa: BLE001 - PIL raises many types for broken files
        return f"cannot be read ({type(err).__name__}: {err})", None
    if min(size) < MIN_SIDE:
        return f"too small ({size[0]}×{size[1]}; at least {MIN_SIDE} px a side)", None
    return None, size


def resolution_errors(base: str | None, resolution: int | None) -> list[str]:
    if resolution is None:
        return []
    if resolution < 64 or resolution % 64:
        return [f"Hyper-SD: the resolution must be a multiple of 64 (512, 768, 1024…), got {resolution}"]
    if base == "sd15" and resolution > SD15_MAX_RESOLUTION:
        return [
            f"Hyper-SD: resolution {resolution} is SDXL-sized but the model is SD1.5: SD1.5 models train at 512 "
            f"(at most {SD15_MAX_RESOLUTION}), SDXL models at 1024. Lower the resolution or pick an SDXL model."
        ]
    return []


def _layout(root: pathlib.Path) -> str | None:
    """The layout discover_dataset will read at ``root`` (its own order of tests); None if it will refuse."""
    from hypersd.distill import data

    if root.is_file():
        if root.name == "metadata.jsonl":
            return "metadata.jsonl"
        return "prompts" if root.suffix.lower() in (".txt", ".prompts") else None
    if not root.is_dir():
        return None
    if (root / "metadata.jsonl").is_file():
        return "metadata.jsonl"
    if any(p.is_dir() and data._KOHYA_FOLDER.match(p.name) for p in root.iterdir()):
        return "kohya"
    return "folder"


def _ignored_files(root: pathlib.Path, kind: str) -> list[str]:
    """Warnings for images the chosen layout does not read (they were probably meant to be trained on)."""
    from hypersd.distill import data

    def images(folder: pathlib.Path) -> list[pathlib.Path]:
        return [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in data.IMAGE_EXTENSIONS]

    folders = [root]
    if kind == "kohya":
        folders += sorted(p for p in root.iterdir() if p.is_dir() and data._KOHYA_FOLDER.match(p.name))
    warnings = []
    other_formats = sorted(
        p for folder in folders for p in folder.iterdir() if p.is_file() and p.suffix.lower() in OTHER_IMAGE_EXTENSIONS
    )
    if other_formats:
        warnings.append(
            f"Hyper-SD: {len(other_formats)} files are skipped because only {', '.join(data.IMAGE_EXTENSIONS)} are "
            f"read: {_names(other_formats, root)}; convert them to PNG or JPEG to train on them"
        )
    if kind == "kohya":
        loose = sorted(images(root))
        if loose:
            warnings.append(
                f"Hyper-SD: {len(loose)} images lie directly in the data folder and are skipped (with N_name/ "
                f"folders only those are read): {_names(loose, root)}; move them into an N_name/ folder"
            )
    subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not data._KOHYA_FOLDER.match(p.name))
    unread = [p for p in subfolders if images(p)]
    if unread and kind in ("folder", "kohya"):
        warnings.append(
            f"Hyper-SD: the images in {_names(unread, root)} are skipped: subfolders are read only when named like "
            "kohya's N_name/ (N repeats, name = fallback caption), e.g. 1_house_style"
        )
    return warnings


def dataset_report(
    path: str | pathlib.Path | None,
    base: str | None = None,
    resolution: int | None = None,
    max_thumbnails: int = 8,
) -> DatasetReport:
    """What training on ``path`` would read, and every reason it should not start yet.

    ``base`` ("sd15" | "sdxl") and ``resolution`` are optional: with them the resolution is checked against the
    model type and the image sizes.  A path the operating system refuses to read is one of those reasons.
    """
    try:
        return _dataset_report(path, base, resolution, max_thumbnails)
    except OSError as err:  # a folder WebUI may not read, a name the file system refuses
        report = DatasetReport(str(path).strip() if path is not None else "")
        where = f" ({err.filename})" if err.filename and len(str(err.filename)) < 300 else ""
        report.errors.append(
            f"Hyper-SD: the training data cannot be read: {err.strerror or err}{where}; check the path and that "
            "WebUI's user may read it"
        )
        return report


def _resolution_checks(report: DatasetReport, base: str | None, resolution: int | None) -> None:
    report.errors += resolution_errors(base, resolution)
    if base == "sdxl" and resolution is not None and not report.errors and resolution < SDXL_MIN_RESOLUTION:
        report.warnings.append(
            f"Hyper-SD: SDXL models are trained at 1024; at {resolution} the LoRA learns low-resolution pictures "
            "and may look worse at 1024. Use 1024 unless memory does not allow it."
        )


def _caption_checks(
    report: DatasetReport, samples: list, unique: list, missing: list[pathlib.Path], folder: pathlib.Path, kind: str
) -> list[str]:
    """Counts the captioned images, reports the missing and the empty captions; the lines to list."""
    from hypersd.distill import data

    own_caption = {
        image for image in unique if kind == "metadata.jsonl" or (data._caption_for(image) is not None)
    }  # fmt: skip
    report.captioned = len(own_caption)
    lines: list[str] = []
    if missing:
        report.errors.append(
            f"Hyper-SD: {len(missing)} of {len(unique)} images have no caption file; every image in a plain folder "
            "needs a same-name .txt or .caption file (or use kohya N_name/ folders, whose name is the fallback "
            "caption)"
        )
        lines += [f"{_display(p, folder)}: no caption (write {p.with_suffix('.txt').name})" for p in missing]
    empty = sorted({s.image for s in samples if s.image in own_caption and not s.caption.strip()})
    if empty:
        report.warnings.append(
            f"Hyper-SD: {len(empty)} images have an empty caption: {_names(empty, folder)}; they train without a "
            "prompt. Write what each image shows."
        )
    return lines


def _image_checks(report: DatasetReport, unique: list, folder: pathlib.Path, max_thumbnails: int) -> list[str]:
    """Opens every image: its size, the thumbnails, and the lines for those that cannot be used."""
    unusable = []
    for image in unique:
        problem, size = image_problem(image)
        if problem:
            unusable.append(f"{_display(image, folder)}: {problem}")
            continue
        report.widths.append(size[0])
        report.heights.append(size[1])
        if len(report.thumbnails) < max_thumbnails:
            report.thumbnails.append(image)
    if unusable:
        report.errors.append(
            f"Hyper-SD: {len(unusable)} of {len(unique)} images cannot be used (listed below); fix or remove them"
        )
    return unusable


def _size_warnings(report: DatasetReport, resolution: int | None) -> None:
    if report.widths and resolution and not report.errors:
        # aspect buckets keep about resolution² pixels: a smaller image is upscaled
        small = sum(1 for w, h in zip(report.widths, report.heights, strict=True) if w * h < resolution * resolution)
        if small * 2 > len(report.widths):
            report.warnings.append(
                f"Hyper-SD: {small} of {len(report.widths)} images have fewer pixels than {resolution}×{resolution}; "
                "they will be upscaled and look blurry, and the LoRA learns that. Use larger images or a lower "
                "resolution."
            )
    if 0 < report.images < FEW_IMAGES:
        report.warnings.append(
            f"Hyper-SD: only {report.images} images; distillation learns the teacher's behaviour, so a few dozen "
            "varied images (or a prompt list) generalise better"
        )


def _dataset_report(
    path: str | pathlib.Path | None, base: str | None, resolution: int | None, max_thumbnails: int
) -> DatasetReport:
    from hypersd.distill import data

    text = str(path).strip() if path is not None else ""
    report = DatasetReport(text)
    _resolution_checks(report, base, resolution)
    if not text:
        report.errors.append("Hyper-SD: choose the training data: an image folder with captions or a prompt list")
        return report
    root = pathlib.Path(text).expanduser()
    kind = _layout(root)
    folder = root.parent if root.name == "metadata.jsonl" and root.is_file() else root

    missing: list[pathlib.Path] = []
    try:
        dataset = data.discover_dataset(root)
        samples = dataset.samples
    except data.DataError as err:
        if kind == "folder":
            images = data._images_in(root)
            missing = [image for image in images if data._caption_for(image) is None]
        if not missing:
            report.errors.append(str(err))
            if kind in ("folder", "kohya"):
                report.warnings += _ignored_files(root, kind)
            return report
        # the engine stops at the first missing caption; list them all and check the rest of the folder too
        samples = [data.Sample(image, data._caption_for(image) or "") for image in images]

    report.kind = kind
    report.samples = len(samples)
    if kind == "prompts":
        report.prompts = len(samples)
        return report

    unique = list(dict.fromkeys(s.image for s in samples if s.image is not None))
    report.images = len(unique)
    lines = _caption_checks(report, samples, unique, missing, folder, kind)
    report.warnings += _ignored_files(folder, kind or "folder")
    lines += _image_checks(report, unique, folder, max_thumbnails)
    report.problems = _listed(lines)
    _size_warnings(report, resolution)
    return report


def size_summary(report: DatasetReport) -> str:
    sizes = report.sizes
    if sizes is None:
        return ""
    return (
        f"width {sizes.min_width}–{sizes.max_width} (median {sizes.median_width}), "
        f"height {sizes.min_height}–{sizes.max_height} (median {sizes.median_height})"
    )


def format_report(report: DatasetReport) -> str:
    """Markdown for the UI."""
    lines = [f"**Data:** `{report.path}`"]
    if report.kind == "prompts":
        lines.append(f"- prompt list: {report.prompts} prompts (data-free distillation: the teacher makes the images)")
    elif report.kind:
        coverage = f"{100 * report.captioned / report.images:.0f}%" if report.images else "–"
        fallback = report.kind == "kohya" and report.captioned < report.images
        lines.append(
            f"- layout: {report.kind}; {report.images} images, {report.samples} training samples; "
            f"captions: {report.captioned} of {report.images} ({coverage})"
            + ("; the rest use their folder's class token" if fallback else "")
        )
        summary = size_summary(report)
        if summary:
            lines.append(f"- sizes: {summary}")
    lines += [f"- ❌ {e}" for e in report.errors]
    lines += [f"- ⚠️ {w}" for w in report.warnings]
    if report.problems:
        lines.append("**Problems:**")
        lines += [f"  - {p}" for p in report.problems]
    return "\n".join(lines)
