"""`python -m hypersd demo`: the shipped teacher is a real SD1.5-layout model, the quick path runs the distillation
engine end to end, and the summary's checks are computed from the numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from hypersd.demo import domain, summary  # noqa: E402
from hypersd.demo.teacher import MAX_TOKENS, TEACHER_DIR, WORDS  # noqa: E402


def test_every_caption_names_its_label_and_nothing_else_parses():
    for label in domain.all_labels():
        for template in range(len(domain.TEMPLATES)):
            assert domain.parse_caption(label.caption(template)) == label
    assert domain.parse_caption("a red blue circle") is None
    assert domain.parse_caption("a cat") is None
    assert domain.parse_caption("Triangle, PURPLE") == domain.Label(2, 5)


def test_renders_are_deterministic_balanced_and_in_range():
    x1, labels1, captions1 = domain.make_dataset(96, seed=3)
    x2, labels2, captions2 = domain.make_dataset(96, seed=3)
    assert torch.equal(x1, x2) and labels1 == labels2 and captions1 == captions2
    assert x1.shape == (96, 3, 32, 32) and float(x1.min()) >= -1 and float(x1.max()) <= 1
    counts = np.bincount([lab.shape * 6 + lab.color for lab in labels1], minlength=48)
    assert counts.min() == counts.max() == 2
    with pytest.raises(ValueError, match="Hyper-SD: "):
        domain.render(domain.Label(99, 0), np.random.default_rng(0))


def test_the_tokenizer_makes_each_domain_word_one_token_and_still_reads_other_words(tmp_path):
    from transformers import CLIPTokenizer

    from hypersd.distill.tiny import write_tiny_tokenizer

    write_tiny_tokenizer(tmp_path, words=WORDS, max_length=MAX_TOKENS)
    tok = CLIPTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    for word in WORDS:
        assert tok.tokenize(word) == [word + "</w>"]
    assert tok.tokenize("zebra") == ["z", "e", "b", "r", "a</w>"]
    shipped = CLIPTokenizer.from_pretrained(str(TEACHER_DIR / "tokenizer"), local_files_only=True)
    text = "a picture of a purple diamond, bars"
    assert shipped(text).input_ids == tok(text).input_ids


@pytest.fixture(scope="module")
def teacher():
    from hypersd.distill.models import load_model

    return load_model(TEACHER_DIR)


def test_the_shipped_teacher_is_a_small_sd15_layout_diffusers_model(teacher):
    size = sum(p.stat().st_size for p in TEACHER_DIR.rglob("*") if p.is_file())
    assert size < 10 * 2**20
    config = teacher.unet.config
    assert teacher.base == "sd15" and config.layers_per_block == 2 and len(config.block_out_channels) == 4
    assert list(config.down_block_types) == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    assert list(config.up_block_types) == ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3
    from hypersd.distill.engine import _check_lora_maps
    from hypersd.distill.lora import add_lora

    add_lora(teacher.unet, 4, 4.0, "all", seed=0)
    _check_lora_maps(teacher.unet, "sd15")  # its LoRA keys land on WebUI's SD1.5 modules


def test_the_shipped_text_encoder_has_the_hub_key_layout_that_every_transformers_version_loads():
    """Hub CLIP checkpoints (e.g. openai/clip-vit-large-patch14) keep every text-encoder weight under
    ``text_model.``; transformers 4 (Forge's 4.46.1, WebUI's 4.30.2) silently skips any other key."""
    from safetensors import safe_open

    with safe_open(str(TEACHER_DIR / "text_encoder" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all(key.startswith("text_model.") for key in keys), keys[:3]


def test_a_rebuilt_teachers_text_encoder_is_written_in_that_layout_and_loads_unchanged(tmp_path):
    from transformers import CLIPTextConfig, CLIPTextModel

    from hypersd.demo.teacher import prefix_text_encoder_keys, text_config

    torch.manual_seed(0)
    encoder = CLIPTextModel(CLIPTextConfig(**text_config(40))).eval()
    encoder.save_pretrained(tmp_path)
    prefix_text_encoder_keys(tmp_path / "model.safetensors")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all(key.startswith("text_model.") for key in keys)
    loaded = CLIPTextModel.from_pretrained(str(tmp_path), local_files_only=True).eval()
    ids = torch.tensor([[1, 5, 7, 2]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).last_hidden_state, encoder(ids).last_hidden_state, rtol=0, atol=0)


def test_the_shipped_classifier_reads_fresh_renders(teacher):
    from hypersd.demo.classifier import CLASSIFIER_FILE, load_classifier

    net = load_classifier(TEACHER_DIR / CLASSIFIER_FILE)
    images, labels, _ = domain.make_dataset(480, seed=424242)  # a seed the teacher was not built from
    assert float(net.matches(images, labels).mean()) >= 0.95


def test_the_shipped_teacher_draws_what_its_prompt_says(teacher):
    """The teacher's 25-step CFG samples, read back by the classifier: CFG and the text encoder do their job."""
    from hypersd import tscd
    from hypersd.demo.classifier import CLASSIFIER_FILE, load_classifier
    from hypersd.distill.models import encode_prompts, unet_eps
    from hypersd.schedules import alphas_cumprod

    labels = domain.all_labels()
    prompts = [lab.caption(i % len(domain.TEMPLATES)) for i, lab in enumerate(labels)]
    cond, uncond = encode_prompts(teacher, prompts), encode_prompts(teacher, [""] * len(prompts))
    noise = torch.randn(len(prompts), 4, 8, 8, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        x0 = tscd.guided_ddim_sample(
            lambda x, t, c: unet_eps(teacher.unet, x, t, c), noise, cond, uncond, 25, 3.0, alphas_cumprod()
        )
        images = teacher.vae.decode(x0 / teacher.vae_scale).sample.clamp(-1, 1)
    fidelity = float(load_classifier(TEACHER_DIR / CLASSIFIER_FILE).matches(images, labels).mean())
    assert fidelity >= 0.8, fidelity


def test_quick_demo_runs_the_distillation_engine_and_writes_the_report(tmp_path, capsys):
    from hypersd.__main__ import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--threads", "1"]) == 0
    run = out / "demo.run"
    start = next(json.loads(line) for line in (run / "log.jsonl").read_text().splitlines())
    assert start["event"] == "start" and start["config"]["stages"] == ["8", "4", "2", "1", "dmd", "feedback"]
    assert start["config"]["model"] == str(TEACHER_DIR)
    report = json.loads((run / "report.json").read_text())
    assert set(report["loras"]) == {"8", "4", "2", "1", "dmd", "feedback"}
    for name in ("report.html", "report-grid.png"):
        assert (run / name).stat().st_size > 0
    for name in ("results.json", "summary.txt"):
        assert (out / name).stat().st_size > 0
    for stem in ("8step", "4step", "2step", "1step", "unified", "feedback"):
        assert (out / "loras" / f"demo-{stem}.safetensors").is_file()
    printed = capsys.readouterr().out
    assert "python -m hypersd distill" in printed and "pixel error ÷ teacher DDIM" in printed
    assert "Checks (the issues' bars" in printed


def _report(teacher_err, lora_err, fid, fd, reward):
    """A hand-made report.json-shaped dict: teacher line and LoRAs with the given numbers at 1/2/4/8 steps."""
    steps = ("1", "2", "4", "8")
    rep = {"reference_steps": 25, "teacher": {"25": {"pixel_mse": 0.0, "fidelity": 0.9}}, "loras": {}}
    for n in steps:
        rep["teacher"][n] = {"pixel_mse": teacher_err[n], "fidelity": 0.5, "frechet": 1.0, "reward": -1.0}
    for name in ("8", "4", "2", "1", "dmd", "feedback"):
        rep["loras"][name] = {"best": {n: {"pixel_mse": lora_err[name][n], "fidelity": fid[name], "frechet": fd[name],
                                           "reward": reward[name]} for n in steps}}  # fmt: skip
    return rep


def test_summary_checks_are_computed_from_the_numbers():
    teacher_err = {"1": 1.0, "2": 0.5, "4": 0.2, "8": 0.1}
    err = {name: {"1": 0.5, "2": 0.4, "4": 0.2, "8": 0.14} for name in ("8", "4", "2", "1", "dmd", "feedback")}
    err["4"]["4"] = 0.25  # 1.25x the teacher: misses its bar of 1.0
    fid = {"8": 0.6, "4": 0.6, "2": 0.6, "1": 0.6, "dmd": 0.85, "feedback": 0.86}
    fd = {"8": 4.0, "4": 4.0, "2": 4.0, "1": 4.0, "dmd": 1.5, "feedback": 1.8}
    reward = {"8": -2.0, "4": -2.0, "2": -2.0, "1": -2.0, "dmd": -1.5, "feedback": -1.2}
    checks = dict(summary.checks(_report(teacher_err, err, fid, fd, reward)))
    by_start = {text.split(":")[0]: ok for text, ok in checks.items()}
    assert by_start["TSCD final at 1 step(s)"] is True  # 0.5 <= 0.66
    assert by_start["TSCD final at 2 step(s)"] is True  # 0.8 <= 0.82
    assert by_start["TSCD stage k=4 at 4 steps"] is False
    assert by_start["TSCD stage k=8 at 8 steps"] is True  # 1.4 <= 1.5
    unified = next(ok for text, ok in checks.items() if text.startswith("unified 1-step Fréchet"))
    assert unified is True  # 1.5 <= 0.5 * 4.0
    fidelity = next(ok for text, ok in checks.items() if text.startswith("unified 1-step prompt fidelity"))
    assert fidelity is True  # 0.85 / 0.9 = 94 % >= 90 %
    grows = [ok for text, ok in checks.items() if "grows by" in text]
    assert grows == [False, False]  # 1.8 / 1.5 = +20 %
    raised = [ok for text, ok in checks.items() if text.startswith("feedback raises")]
    assert raised == [True, True]
