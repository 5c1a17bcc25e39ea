"""The Train tab's pure parts: log progress, loss plot, data preview, disk estimate, preflight."""

import json
import os

import pytest
from PIL import Image

from hypersd.train import estimate, lossplot
from hypersd.train.preview import dataset_report, format_report
from hypersd.train.progress import LogFollower, format_duration, format_progress, progress_from_records


def _start(t=0.0, stages=(2, 1), steps=3):
    return {"time": t, "event": "start", "config": {"stages": list(stages), "steps_per_stage": steps}, "base": "sd15"}


def _step(step, loss, k, t):
    return {"time": t, "event": "step", "step": step, "loss": loss, "stage": k, "samples_per_s": 2.0}


# ------------------------------------------------------------------------------------------------ progress


def test_progress_through_a_run_with_eta_and_stages():
    records = [_start(), {"time": 1, "event": "cached"}]
    records += [_step(1, 0.5, 2, 10), _step(2, 0.4, 2, 12), _step(3, 0.3, 2, 14)]
    records += [{"time": 15, "event": "stage_end", "stage": 2, "global_step": 3}, _step(4, 0.2, 1, 16)]
    p = progress_from_records(records)
    assert (p.phase, p.step, p.total_steps, p.stage, p.stage_index, p.loss) == ("training", 4, 6, 1, 2, 0.2)
    assert p.losses == [(1, 0.5, 2), (2, 0.4, 2), (3, 0.3, 2), (4, 0.2, 1)]
    assert p.stage_ends == [(2, 3)]
    assert p.eta_seconds == pytest.approx((6 - 4) / (3 / 6))  # 3 steps in 6 s -> 2 steps left: 4 s
    line = format_progress(p)
    assert "Stage k=1 (2 of 2)" in line and "step 4 / 6 (67%)" in line and "ETA 4s" in line


def test_resume_drops_the_steps_after_the_checkpoint_and_restarts_the_eta():
    records = [_start(), _step(1, 0.9, 2, 10), _step(2, 0.8, 2, 11), _step(3, 0.7, 2, 12)]
    records += [{"time": 13, "event": "interrupted", "global_step": 3}]
    assert progress_from_records(records).phase == "interrupted"
    # a kill after step 3 with the checkpoint at step 2: the resumed run redoes step 3
    records += [_start(100), {"time": 101, "event": "resume", "global_step": 2}, _step(3, 0.6, 2, 200)]
    p = progress_from_records(records)
    assert p.losses == [(1, 0.9, 2), (2, 0.8, 2), (3, 0.6, 2)]
    assert p.eta_seconds is None  # one step of this session: no rate yet (the pause is not counted)
    records.append(_step(4, 0.5, 1, 202))
    assert progress_from_records(records).eta_seconds == pytest.approx(2 / (1 / 2))


def test_terminal_phases_and_texts():
    assert format_progress(progress_from_records([])).startswith("Starting")
    assert format_progress(progress_from_records([_start()])).startswith("Caching")
    done = progress_from_records([_start(), _step(1, 0.1, 2, 1), {"time": 2, "event": "done", "global_step": 6,
                                                                   "final": "/L/x.safetensors"}])  # fmt: skip
    assert done.phase == "done" and format_progress(done) == "Done after 6 steps: /L/x.safetensors"
    failed = progress_from_records([_start(), {"time": 1, "event": "error", "message": "out of memory"}])
    assert failed.phase == "error" and format_progress(failed) == "Failed: out of memory"
    assert format_duration(3725) == "1h 02m" and format_duration(65) == "1m 05s" and format_duration(None) == "?"


def test_log_follower_reads_increments_partial_lines_and_a_recreated_file(tmp_path):
    log = tmp_path / "log.jsonl"
    follower = LogFollower(log)
    assert follower.poll().phase == "starting"  # no file yet
    log.write_text(json.dumps(_start()) + "\n" + json.dumps(_step(1, 0.5, 2, 1))[:20])
    assert follower.poll().step == 0  # the half-written step is not read yet
    with open(log, "a") as handle:
        handle.write(json.dumps(_step(1, 0.5, 2, 1))[20:] + "\n")
    assert follower.poll().step == 1
    offset = follower._offset
    assert follower.poll().step == 1 and follower._offset == offset  # nothing new: nothing read

    os.remove(log)  # --overwrite deletes the run folder and starts a new log
    log.write_text(json.dumps(_start(stages=(4,), steps=10)) + "\n")
    p = follower.poll()
    assert (p.step, p.total_steps, p.losses) == (0, 10, [])


# ------------------------------------------------------------------------------------------------ loss plot


def _colour_pixels(img, colour):
    return [(x, y) for x in range(img.width) for y in range(img.height) if img.getpixel((x, y)) == colour]


def test_plot_draws_the_smoothed_loss_going_down_and_a_stage_boundary():
    points = [(s, 1.0 - 0.08 * s, 2 if s <= 5 else 1) for s in range(1, 11)]
    img = lossplot.render_loss_plot(points, stage_ends=[(2, 5)], width=400, height=200)
    line = _colour_pixels(img, lossplot.SMOOTH)
    assert line
    xs = [x for x, _ in line]
    assert min(xs) >= lossplot.MARGIN_LEFT - 3 and max(xs) <= 400 - lossplot.MARGIN_RIGHT + 3
    left = [y for x, y in line if x < min(xs) + 20]
    right = [y for x, y in line if x > max(xs) - 20]
    assert sum(left) / len(left) < sum(right) / len(right)  # falling loss: higher on the image at the start
    stage = {x for x, _ in _colour_pixels(img, lossplot.STAGE)}
    x_end = lossplot.MARGIN_LEFT + (5.5 - 1) / 9 * (400 - lossplot.MARGIN_LEFT - lossplot.MARGIN_RIGHT)
    assert any(abs(x - x_end) <= 1 for x in stage)


def test_plot_chooses_log_scale_for_wide_ranges_and_skips_non_finite():
    wide = [(1, 10.0, 1), (2, 1.0, 1), (3, 0.1, 1), (4, float("nan"), 1)]
    log_img = lossplot.render_loss_plot(wide, width=300, height=160)
    narrow = lossplot.render_loss_plot([(1, 1.0, 1), (2, 0.9, 1)], width=300, height=160)
    # the label differs: compare the title strip
    assert log_img.crop((60, 0, 200, 18)).tobytes() != narrow.crop((60, 0, 200, 18)).tobytes()
    assert lossplot.smooth([1.0, 1.0, 1.0]) == pytest.approx([1.0, 1.0, 1.0])  # bias-corrected: no pull to 0


def test_plot_placeholder_without_values():
    img = lossplot.render_loss_plot([], width=200, height=100)
    assert img.size == (200, 100) and _colour_pixels(img, lossplot.SMOOTH) == []
    assert img.getbbox() is not None


# ------------------------------------------------------------------------------------------------ preview


def _images(folder, n, size=(96, 96), captions=True):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", size, (i * 20 % 255, 80, 120)).save(folder / f"{i}.png")
        if captions:
            (folder / f"{i}.txt").write_text(f"thing {i}")
    return folder


def test_preview_of_a_good_folder(tmp_path):
    report = dataset_report(_images(tmp_path / "d", 12), base="sd15", resolution=64, max_thumbnails=4)
    assert report.ok and report.kind == "folder"
    assert (report.images, report.samples, report.captioned) == (12, 12, 12)
    assert len(report.thumbnails) == 4 and report.warnings == []
    text = format_report(report)
    assert "12 images" in text and "12 of 12 (100%)" in text and "width 96–96" in text


def test_preview_lists_every_problem_and_every_missing_caption(tmp_path):
    folder = _images(tmp_path / "d", 3)
    (folder / "bad1.png").write_bytes(b"not an image")
    (folder / "bad2.jpg").write_bytes(b"\x89PNG broken")
    (folder / "bad1.txt").write_text("x")
    (folder / "bad2.txt").write_text("x")
    Image.new("RGB", (4, 4)).save(folder / "tiny.png")
    (folder / "tiny.txt").write_text("x")
    report = dataset_report(folder)
    assert not report.ok
    assert sorted(p.split(":")[0] for p in report.problems) == ["bad1.png", "bad2.jpg", "tiny.png"]

    Image.new("RGB", (64, 64)).save(folder / "nocap1.png")
    Image.new("RGB", (64, 64)).save(folder / "nocap2.png")
    report = dataset_report(folder)
    assert "2 of 8 images have no caption" in report.errors[0]
    assert [p for p in report.problems if "no caption" in p] == [
        "nocap1.png: no caption (write nocap1.txt)", "nocap2.png: no caption (write nocap2.txt)"
    ]  # fmt: skip
    assert report.captioned == 6


def test_preview_refuses_sdxl_sizes_for_sd15_and_warns_about_upscaling(tmp_path):
    folder = _images(tmp_path / "d", 12, size=(512, 512))
    report = dataset_report(folder, base="sd15", resolution=1024)
    assert any("SDXL-sized" in e for e in report.errors)
    assert dataset_report(folder, base="sdxl", resolution=1024).ok
    assert any("upscaled" in w for w in dataset_report(folder, base="sdxl", resolution=1024).warnings)
    assert dataset_report(folder, base="sd15", resolution=512).warnings == []


def test_preview_of_missing_empty_kohya_and_prompt_lists(tmp_path):
    assert "not found" in dataset_report(tmp_path / "nope").errors[0]
    (tmp_path / "empty").mkdir()
    assert "no training images" in dataset_report(tmp_path / "empty").errors[0]
    kohya = tmp_path / "k"
    _images(kohya / "3_house_style", 2, captions=False)
    report = dataset_report(kohya)
    assert report.ok and report.kind == "kohya" and (report.images, report.samples, report.captioned) == (2, 6, 0)
    assert "class token" in format_report(report) and any("only 2 images" in w for w in report.warnings)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n# comment\na dog\n")
    report = dataset_report(prompts)
    assert report.ok and report.kind == "prompts" and report.prompts == 2 and report.thumbnails == []


# ------------------------------------------------------------------------------------------------ estimate


def test_disk_needed_and_the_check(tmp_path, monkeypatch):
    params = estimate.lora_parameter_count("sd15", 64, "all")
    assert params == 67_252_224  # rank 64 on SD1.5: the size class of the published LCM-LoRA (134 MB in fp16)
    need = estimate.disk_needed("sd15", 64, "all", 4)
    assert need == params * 2 * 5 + 2 * params * 20 + estimate.SLACK
    assert estimate.disk_needed("sd15", 64, "all", 4, adversarial=True) > need
    assert estimate.check_disk(tmp_path / "not" / "yet", 1) is None  # the nearest existing parent is measured
    import collections
    import shutil

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10, 10, 5 * 2**20))
    message = estimate.check_disk(tmp_path, need)
    assert "5 MiB free" in message and f"{need / 2**20:,.0f} MiB" in message
    with pytest.raises(ValueError, match="no size estimate"):
        estimate.lora_parameter_count("sd2", 4)


def _bitmap_font(*_args, **_kwargs):
    """Pillow < 10.1's only built-in font (WebUI 1.10 ships Pillow 9.5): Latin-1 glyphs only."""
    from PIL import ImageFont

    # Pillow >= 10.1 keeps it as load_default_imagefont(); before that, load_default() is that font
    return getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)()


def test_plot_and_comparison_labels_draw_with_webui_pillow_bitmap_font(monkeypatch):
    import numpy as np

    from hypersd import report_page as report
    from hypersd.report_page import latin1

    monkeypatch.setattr(lossplot, "_font", _bitmap_font)
    img = lossplot.render_loss_plot([(1, 100.0, 8), (2, 1.0, 4), (3, float("inf"), 4)], stage_ends=[(8, 1)])
    assert img.size == (640, 260)

    monkeypatch.setattr(report, "_font", _bitmap_font)
    tiles = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    label = "house: DPM++ 2M Karras, 25 steps — 1.0 s/image ✓"
    with pytest.raises(UnicodeEncodeError):  # what the grid must protect itself from
        _bitmap_font().getmask(label)
    safe = latin1(label)
    assert safe == "house: DPM++ 2M Karras, 25 steps ? 1.0 s/image ?"
    assert report.make_grid([(label, tiles)], scale=1).size[1] == 8 + 2  # the unsafe label draws too
    assert report.make_grid([(label, tiles)], scale=1, header=["a ✓"]).size[1] == 16 + 8 + 2
