"""Dataset discovery, validation, buckets and the config file / preset layer (no models needed)."""

import json

import pytest

pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from hypersd.distill.config import ConfigError, DistillConfig, build_config  # noqa: E402
from hypersd.distill.data import (  # noqa: E402
    DataError,
    discover_dataset,
    load_image,
    make_buckets,
    nearest_bucket,
    validate_images,
)


def _png(path, size=(40, 24), color=(200, 10, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def test_plain_folder_with_txt_and_caption_files(tmp_path):
    _png(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("a red box\n")
    _png(tmp_path / "b.jpg")
    (tmp_path / "b.caption").write_text("a jpeg")
    ds = discover_dataset(tmp_path)
    assert ds.kind == "images"
    assert [(s.image.name, s.caption) for s in ds.samples] == [("a.png", "a red box"), ("b.jpg", "a jpeg")]


def test_missing_caption_names_the_image_and_the_file_to_write(tmp_path):
    _png(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("ok")
    _png(tmp_path / "lonely.png")
    with pytest.raises(DataError, match=r"no caption for .*lonely\.png.*lonely\.txt"):
        discover_dataset(tmp_path)


def test_kohya_repeat_folders_and_class_token_fallback(tmp_path):
    _png(tmp_path / "3_red_box" / "x.png")
    (tmp_path / "3_red_box" / "x.txt").write_text("captioned")
    _png(tmp_path / "1_blue" / "y.png")
    ds = discover_dataset(tmp_path)
    captions = sorted(s.caption for s in ds.samples)
    assert captions == ["blue", "captioned", "captioned", "captioned"]


def test_metadata_jsonl(tmp_path):
    _png(tmp_path / "img" / "p.png")
    lines = [{"file_name": "img/p.png", "text": "from jsonl"}]
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    ds = discover_dataset(tmp_path)
    assert [(s.image.name, s.caption) for s in ds.samples] == [("p.png", "from jsonl")]
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "gone.png", "text": "x"}))
    with pytest.raises(DataError, match=r"line 1 names .*gone\.png, which does not exist"):
        discover_dataset(tmp_path)
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "img/p.png"}))
    with pytest.raises(DataError, match='has no "text"'):
        discover_dataset(tmp_path)


def test_prompt_list_and_empty_inputs(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# header\n  a cat  \n\nа собака\n")
    ds = discover_dataset(prompts)
    assert ds.kind == "prompts" and ds.captions == ["a cat", "а собака"]
    prompts.write_text("# only comments\n\n")
    with pytest.raises(DataError, match="holds no prompts"):
        discover_dataset(prompts)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"no training images in .*empty"):
        discover_dataset(empty)
    with pytest.raises(DataError, match="not found"):
        discover_dataset(tmp_path / "missing")


def test_unreadable_image_is_named(tmp_path):
    _png(tmp_path / "good.png")
    (tmp_path / "good.txt").write_text("good")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "broken.txt").write_text("broken")
    ds = discover_dataset(tmp_path)
    with pytest.raises(DataError, match=r"cannot read image .*broken\.png"):
        validate_images(ds)


def test_buckets_are_multiples_of_64_within_the_area_and_ratio():
    buckets = make_buckets(1024)
    assert (1024, 1024) in buckets and (1152, 896) in buckets and (896, 1152) in buckets
    for w, h in buckets:
        assert w % 64 == 0 and h % 64 == 0
        assert w * h <= 1024 * 1024
        assert 0.5 <= w / h <= 2.0
    assert nearest_bucket(1600, 900, buckets) == (1344, 768)  # 16:9 → 1.75, the closest log-ratio
    assert nearest_bucket(500, 500, buckets) == (1024, 1024)


def test_load_image_covers_then_centre_crops(tmp_path):
    img = Image.new("RGB", (80, 40), (0, 0, 0))
    img.paste((255, 255, 255), (30, 0, 50, 40))  # white band in the middle
    img.save(tmp_path / "i.png")
    tensor, orig_hw, crop_tl = load_image(tmp_path / "i.png", (32, 32))
    assert tensor.shape == (3, 32, 32)
    assert orig_hw == (40, 80) and crop_tl == (0, 16)  # resized to 64x32, 16 px cut on each side
    assert float(tensor.min()) >= -1.0 and float(tensor.max()) <= 1.0
    assert float(tensor[:, :, 16].mean()) > 0.9 and float(tensor[:, :, 0].mean()) < -0.9


def test_config_precedence_and_files(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('[distill]\nmodel = "m.safetensors"\nrank = 8\nstages = [4, 1]\nsolver_steps = 40\n')
    cfg = build_config("quick", str(toml), rank=32)
    assert (cfg.model, cfg.rank, cfg.stages, cfg.steps_per_stage) == ("m.safetensors", 32, ("4", "1"), 100)
    js = tmp_path / "run.json"
    js.write_text(json.dumps({"model": "x", "stage_weights": {"2": [0.5, 0.5]}, "sample_prompts": ["a", "b"]}))
    cfg = build_config(None, str(js), stages="8,4,2")
    assert cfg.stage_weights == {2: (0.5, 0.5)} and cfg.sample_prompts == ("a", "b") and cfg.stages == ("8", "4", "2")
    js.write_text(json.dumps({"model": "x", "rnak": 4}))
    with pytest.raises(ConfigError, match="unknown setting.*rnak"):
        build_config(None, str(js))


def test_config_validation_names_each_problem():
    with pytest.raises(ConfigError) as err:
        build_config(None, None, model="m", stages="8,3", mixed_precision="fp8", out="a/b")
    text = str(err.value)
    assert "stages" in text or "solver_steps" in text
    assert "mixed_precision" in text and "--out" in text
    cfg = DistillConfig(model="m").resolved("sdxl")
    assert (cfg.omega_min, cfg.omega_max, cfg.resolution, cfg.buckets, cfg.alpha) == (3.0, 6.0, 1024, True, 64.0)
    cfg = DistillConfig(model="m").resolved("sd15")
    assert (cfg.omega_min, cfg.omega_max, cfg.resolution, cfg.buckets) == (5.0, 15.0, 512, False)
