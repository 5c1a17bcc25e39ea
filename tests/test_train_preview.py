"""hypersd.train.preview: the data preview lists every problem at once and agrees with the engine's own checks."""

import json

import pytest
from PIL import Image

from hypersd.distill import data
from hypersd.train.preview import MAX_LISTED, SizeSummary, dataset_report, format_report


def image(path, size=(96, 96), caption="a thing", colour=(90, 120, 150)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    if caption is not None:
        path.with_suffix(".txt").write_text(caption)
    return path


def folder(root, n, size=(96, 96), captions=True):
    for i in range(n):
        image(root / f"{i:02d}.png", size, f"thing {i}" if captions else None)
    return root


# ------------------------------------------------------------------------------------------------ good data


def test_a_plain_folder(tmp_path):
    root = tmp_path / "d"
    sizes = [(64, 80), (96, 64), (128, 96), (80, 128)] * 3
    for i, size in enumerate(sizes):
        image(root / f"{i:02d}.png", size, f"thing {i}")
    image(root / "zz.jpg", (64, 64), None).with_suffix(".caption").write_text("a caption file")  # the other suffix
    report = dataset_report(root, base="sd15", resolution=64, max_thumbnails=4)
    assert report.ok and report.kind == "folder" and report.errors == [] and report.warnings == []
    assert (report.images, report.samples, report.captioned, report.prompts) == (13, 13, 13, 0)
    assert report.thumbnails == [root / "00.png", root / "01.png", root / "02.png", root / "03.png"]
    assert report.sizes == SizeSummary(64, 80, 128, 64, 80, 128)
    text = format_report(report)
    assert "- layout: folder; 13 images, 13 training samples; captions: 13 of 13 (100%)" in text
    assert "- sizes: width 64–128 (median 80), height 64–128 (median 80)" in text
    assert "❌" not in text and "⚠️" not in text


def test_kohya_repeats_and_class_token_fallback(tmp_path):
    root = tmp_path / "k"
    image(root / "3_house_style" / "a.png", caption=None)
    image(root / "3_house_style" / "b.png", caption=None)
    image(root / "1_extra" / "c.png", caption="a house at night")
    report = dataset_report(root)
    assert report.ok and report.kind == "kohya"
    assert (report.images, report.samples, report.captioned) == (3, 7, 1)
    text = format_report(report)
    assert "captions: 1 of 3 (33%); the rest use their folder's class token" in text
    assert any("only 3 images" in w for w in report.warnings)


def test_metadata_jsonl_captions_count_and_the_file_itself_can_be_chosen(tmp_path):
    root = tmp_path / "m"
    image(root / "img" / "a.png", caption=None)
    image(root / "img" / "b.png", caption=None)
    rows = [{"file_name": "img/a.png", "text": "a cat"}, {"file_name": "img/b.png", "text": "  "}]
    rows.append({"file_name": "img/a.png", "text": "the cat again"})
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for path in (root, root / "metadata.jsonl"):
        report = dataset_report(path)
        assert report.ok and report.kind == "metadata.jsonl"
        assert (report.images, report.samples, report.captioned) == (2, 3, 2)
        assert [w for w in report.warnings if "empty caption" in w] == [
            "Hyper-SD: 1 images have an empty caption: img/b.png; they train without a prompt. "
            "Write what each image shows."
        ]


def test_a_prompt_list(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\n# a comment\n\n  a dog on a sofa  \nhouse\n")
    report = dataset_report(prompts, base="sdxl", resolution=1024)
    assert report.ok and report.kind == "prompts"
    assert (report.prompts, report.samples, report.images, report.thumbnails) == (3, 3, 0, [])
    assert report.warnings == []
    assert "prompt list: 3 prompts" in format_report(report)


# ------------------------------------------------------------------------------------------------ refusals


def test_every_unusable_image_is_listed_and_the_engine_agrees(tmp_path):
    root = folder(tmp_path / "d", 3)
    (root / "bad1.png").write_bytes(b"not an image")
    (root / "bad2.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    image(root / "tiny.png", (4, 12))
    good = Image.new("RGB", (64, 64), (1, 2, 3))
    good.save(root / "cut.png")
    (root / "cut.png").write_bytes((root / "cut.png").read_bytes()[:-30])  # truncated: verify() or load() fails
    for name in ("bad1", "bad2", "cut"):
        (root / f"{name}.txt").write_text("x")
    report = dataset_report(root)
    assert not report.ok
    assert report.errors == ["Hyper-SD: 4 of 7 images cannot be used (listed below); fix or remove them"]
    assert sorted(p.split(":")[0] for p in report.problems) == ["bad1.png", "bad2.jpg", "cut.png", "tiny.png"]
    assert "tiny.png: too small (4×12; at least 8 px a side)" in report.problems
    assert report.images == 7 and len(report.widths) == 3 and len(report.thumbnails) == 3
    with pytest.raises(data.DataError):  # the engine refuses the same folder (at its first bad image)
        data.validate_images(data.discover_dataset(root))
    for name in ("bad1", "bad2", "cut", "tiny"):
        (root / f"{name}.png").unlink(missing_ok=True)
    (root / "bad2.jpg").unlink()
    assert dataset_report(root).errors == []
    data.validate_images(data.discover_dataset(root))  # ... and accepts it once the preview is clean


def test_a_long_problem_list_is_cut_with_a_count(tmp_path):
    root = folder(tmp_path / "d", 1)
    for i in range(MAX_LISTED + 5):
        (root / f"bad{i:02d}.png").write_bytes(b"x")
        (root / f"bad{i:02d}.txt").write_text("x")
    report = dataset_report(root)
    assert len(report.problems) == MAX_LISTED + 1
    assert report.problems[-1] == "… and 5 more"
    assert report.errors == [f"Hyper-SD: {MAX_LISTED + 5} of {MAX_LISTED + 6} images cannot be used (listed below); fix or remove them"]  # fmt: skip


def test_every_missing_caption_is_listed_while_the_engine_names_only_the_first(tmp_path):
    root = folder(tmp_path / "d", 3)
    image(root / "nocap1.png", caption=None)
    image(root / "nocap2.webp", caption=None)
    (root / "broken.png").write_bytes(b"x")
    (root / "broken.txt").write_text("x")
    with pytest.raises(data.DataError, match="nocap1.png"):
        data.discover_dataset(root)
    report = dataset_report(root)
    assert report.kind == "folder" and (report.images, report.captioned) == (6, 4)
    assert report.errors[0].startswith("Hyper-SD: 2 of 6 images have no caption file")
    assert report.problems[:2] == ["nocap1.png: no caption (write nocap1.txt)", "nocap2.webp: no caption (write nocap2.txt)"]  # fmt: skip
    assert report.problems[2].startswith("broken.png: cannot be read")  # the images are checked too
    assert len(report.errors) == 2


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "Hyper-SD: training data not found"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "Hyper-SD: no training images in"),
        (lambda p: (p / "x.csv").write_text("a") and p / "x.csv", "is neither a folder of images nor a prompt list"),
        (lambda p: (p / "p.txt").write_text("# only a comment\n") and p / "p.txt", "holds no prompts"),
        (lambda p: (p / "metadata.jsonl").write_text("{not json\n") and p, "line 1 is not valid JSON"),
        (lambda p: "", "Hyper-SD: choose the training data"),
        (lambda p: None, "Hyper-SD: choose the training data"),
    ],
)
def test_engine_refusals_become_errors(tmp_path, make, message):
    report = dataset_report(make(tmp_path))
    assert not report.ok and len(report.errors) == 1 and message in report.errors[0]
    assert report.thumbnails == [] and report.images == 0
    assert message in format_report(report)


def test_resolution_rules(tmp_path):
    small = folder(tmp_path / "small", 12, size=(512, 512))
    large = folder(tmp_path / "large", 12, size=(1024, 1024))
    assert dataset_report(small, base="sd15", resolution=500).errors == [
        "Hyper-SD: the resolution must be a multiple of 64 (512, 768, 1024…), got 500"
    ]
    refused = dataset_report(large, base="sd15", resolution=1024)
    assert (
        len(refused.errors) == 1 and "SD1.5 models train at 512 (at most 768), SDXL models at 1024" in refused.errors[0]
    )
    assert dataset_report(large, base="sd15", resolution=768).ok
    assert dataset_report(large, base=None, resolution=1024).ok  # model type unknown: no refusal
    upscaled = dataset_report(small, base="sdxl", resolution=1024)
    assert upscaled.ok and upscaled.warnings == [
        "Hyper-SD: 12 of 12 images have fewer pixels than 1024×1024; they will be upscaled and look blurry, and the "
        "LoRA learns that. Use larger images or a lower resolution."
    ]
    assert dataset_report(large, base="sdxl", resolution=1024).warnings == []
    assert dataset_report(small, base="sd15", resolution=512).warnings == []
    low = dataset_report(small, base="sdxl", resolution=512)
    assert low.ok and len(low.warnings) == 1 and "SDXL models are trained at 1024" in low.warnings[0]


def test_most_images_decide_the_upscale_warning(tmp_path):
    root = folder(tmp_path / "d", 6, size=(1024, 1024))
    for i in range(6):
        image(root / f"s{i}.png", (640, 640))
    assert dataset_report(root, base="sdxl", resolution=1024).warnings == []  # 6 of 12: not most
    image(root / "s6.png", (640, 640))
    assert any("7 of 13 images have fewer pixels" in w for w in dataset_report(root, base="sdxl", resolution=1024).warnings)  # fmt: skip


def test_few_images_warning_threshold(tmp_path):
    assert any("only 9 images" in w for w in dataset_report(folder(tmp_path / "a", 9)).warnings)
    assert dataset_report(folder(tmp_path / "b", 10)).warnings == []


def test_skipped_files_are_named(tmp_path):
    root = folder(tmp_path / "d", 10)
    Image.new("RGB", (32, 32)).save(root / "anim.gif")
    image(root / "cats" / "c.png")  # a subfolder of a plain folder is not read
    report = dataset_report(root)
    assert report.ok and report.images == 10
    assert len(report.warnings) == 2
    assert report.warnings[0].startswith("Hyper-SD: 1 files are skipped because only .png, .jpg, .jpeg, .webp, .bmp")
    assert "anim.gif" in report.warnings[0]
    assert "the images in cats are skipped" in report.warnings[1]

    kohya = tmp_path / "k"
    folder(kohya / "2_style", 10)
    image(kohya / "loose.png")
    report = dataset_report(kohya)
    assert report.ok and report.samples == 20
    assert report.warnings == [
        "Hyper-SD: 1 images lie directly in the data folder and are skipped (with N_name/ folders only those are "
        "read): loose.png; move them into an N_name/ folder"
    ]


def test_format_report_lists_errors_warnings_and_problems(tmp_path):
    root = folder(tmp_path / "d", 2)
    (root / "bad.png").write_bytes(b"x")
    (root / "bad.txt").write_text("x")
    text = format_report(dataset_report(root, base="sd15", resolution=1024))
    lines = text.splitlines()
    assert lines[0] == f"**Data:** `{root}`"
    assert sum(line.startswith("- ❌ Hyper-SD: ") for line in lines) == 2  # resolution + unreadable image
    assert sum(line.startswith("- ⚠️ Hyper-SD: only 3 images") for line in lines) == 1
    assert lines[-2:] == ["**Problems:**", lines[-1]] and lines[-1].startswith("  - bad.png: cannot be read")
