"""`python -m hypersd demo`: the quick path end to end, and the report's pure parts on hand-made numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from hypersd.demo import report
from hypersd.demo.data import CLASS_NAMES, make_dataset, render_glyph
from hypersd.demo.model import LoRAModel, TinyUNet, UNetConfig, init_lora, load_unet, save_unet


def test_quick_demo_end_to_end(tmp_path, capsys):
    from hypersd.__main__ import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--threads", "2"]) == 0
    for name in ("report.html", "grid.png", "results.json", "loss_curves.svg"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    errors = results["errors"]
    assert set(errors) == {"teacher", "tscd", "tscd_stage", "oneshot"}
    assert set(errors["teacher"]) == {"1", "2", "4", "8", "25"}
    for key in ("tscd", "tscd_stage", "oneshot"):
        assert set(errors[key]) == {"1", "2", "4", "8"}
    assert all(math.isfinite(v) and v >= 0 for rows in errors.values() for v in rows.values())
    assert set(results["tscd_stages"]) == {"8", "4", "2", "1"}
    assert len(results["losses"]["tscd"]) == len(results["losses"]["oneshot"])  # same training budget
    printed = capsys.readouterr().out
    for method in report.METHODS:
        assert method.label in printed
    assert "beats the teacher at 1 step: " in printed
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "<svg" in page and "one-shot CD" in page
    from PIL import Image

    grid = Image.open(out / "grid.png")
    # 1 reference + 5 teacher + 3 x 4 student rows, one column per class
    assert grid.height == 18 * (16 * 4 + 2) and grid.width == 210 + len(CLASS_NAMES) * (16 * 4 + 2)


def test_dataset_is_deterministic_balanced_and_in_range():
    x1, y1 = make_dataset(50, seed=3)
    x2, y2 = make_dataset(50, seed=3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == (50, 3, 16, 16) and float(x1.min()) >= -1 and float(x1.max()) <= 1
    assert sorted(np.bincount(y1.numpy()).tolist()) == [5] * 10
    with pytest.raises(ValueError, match="Hyper-SD: "):
        render_glyph(99, np.random.default_rng(0))


def test_lora_starts_as_the_teacher_and_round_trips(tmp_path):
    net = TinyUNet(UNetConfig(channels=16, emb_dim=32)).eval()
    x, t, y = torch.randn(2, 3, 16, 16), torch.tensor([10, 900]), torch.tensor([0, 10])
    factors = init_lora(net, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(LoRAModel(net, factors)(x, t, y), net(x, t, y))  # up = 0
        factors[next(k for k in factors if k.endswith("lora_up"))].add_(0.1)
        assert not torch.equal(LoRAModel(net, factors)(x, t, y), net(x, t, y))
    save_unet(net, tmp_path / "t.safetensors")
    loaded, meta = load_unet(tmp_path / "t.safetensors")
    assert loaded.config == net.config and meta["hypersd_demo_unet"] == "1"
    with torch.no_grad():  # fp16 storage
        torch.testing.assert_close(loaded(x, t, y), net(x, t, y), rtol=2e-2, atol=2e-2)


def test_shipped_teacher_is_small():
    from hypersd.demo.cli import ASSET_TEACHER

    if not ASSET_TEACHER.is_file():
        pytest.skip("no shipped teacher (the demo trains one)")
    assert ASSET_TEACHER.stat().st_size < 2_000_000


def test_verdict_uses_paired_standard_error():
    a = [1.0, 2.0, 3.0, 4.0]
    assert report.verdict([v - 0.5 for v in a], a) == "yes"  # always lower: SE 0
    assert report.verdict([v + 0.5 for v in a], a) == "no"
    assert report.verdict([1.1, 1.9, 3.1, 3.9], a) == "tie"  # diff +-0.1, mean 0
    diff, se = report.paired_comparison([2.0, 4.0], [1.0, 1.0])
    assert diff == 2.0 and se == pytest.approx(1.0)  # d = [1, 3]: std 1.414, / sqrt 2


def test_table_and_verdict_lines_from_hand_numbers():
    per_image = {
        "teacher": {1: [1.0, 1.2], 2: [0.5, 0.5], 4: [0.1, 0.1], 8: [0.01, 0.01], 25: [0.0, 0.0]},
        "tscd": {1: [0.2, 0.2], 2: [0.2, 0.2], 4: [0.2, 0.2], 8: [0.2, 0.2]},
        "tscd_stage": {1: [0.2, 0.2], 2: [0.1, 0.1], 4: [0.05, 0.05], 8: [0.02, 0.02]},
        "oneshot": {1: [0.1, 0.1], 2: [0.3, 0.3], 4: [0.2, 0.2], 8: [0.2, 0.2]},
    }
    table = report.format_table(per_image, 100)
    assert "100-step" in table and len(table.splitlines()) == 2 + len(report.METHODS)
    assert "1.1000" in table  # mean of the teacher's 1-step errors
    lines = report.verdict_lines(per_image)
    assert "TSCD student beats the teacher at 1 step: yes (0.2000 vs 1.1000, teacher/student = 5.50x)" in lines
    assert any(line.startswith("TSCD student beats the teacher at 8 steps: no") for line in lines)
    assert any(line.startswith("TSCD final does NOT beat one-shot CD at 1 step: one-shot is better") for line in lines)
    assert any(line.startswith("TSCD final beats one-shot CD at 2 steps") for line in lines)
    assert any("a tie within noise" in line and "at 4 steps" in line for line in lines)
    assert "TSCD stage k=4 beats the final TSCD student at 4 steps: yes (0.0500 vs 0.2000)" in lines


def test_smooth_and_svg():
    assert report.smooth([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    svg = report.svg_loss_curves({"a": [1.0, 0.1, 0.01], "b": [0.5, 0.5, 0.5]}, {"a": [1]})
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and "stroke-dasharray" in svg


def test_grid_layout():
    rows = [("r1", np.zeros((3, 16, 16, 3), np.uint8)), ("r2", np.full((3, 16, 16, 3), 255, np.uint8))]
    img = report.make_grid(rows, scale=2, label_width=50)
    assert img.size == (50 + 3 * (32 + 2), 2 * (32 + 2))
    assert img.getpixel((50, 0)) == (0, 0, 0) and img.getpixel((50, 34)) == (255, 255, 255)


def test_train_teacher_command_writes_a_loadable_teacher(tmp_path):
    from hypersd.demo import main

    path = tmp_path / "teacher.safetensors"
    assert main(["--train-teacher", "--teacher-steps", "2", "--teacher", str(path)]) == 0
    net, meta = load_unet(path)
    assert meta["teacher_steps"] == "2" and path.stat().st_size < 2_000_000
    assert net(torch.zeros(1, 3, 16, 16), torch.tensor([5]), torch.tensor([10])).shape == (1, 3, 16, 16)
