"""Reward models behind one interface, with tiny local models: nothing is downloaded; every failure names the fix."""

import sys
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hypersd.distill import rewards  # noqa: E402
from hypersd.distill.rewards import RewardError, check_reward, load_reward, parse_spec  # noqa: E402
from hypersd.report_page import frechet_distance  # noqa: E402


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from transformers import CLIPConfig, CLIPModel

    from hypersd.distill.tiny import write_tiny_tokenizer

    folder = tmp_path_factory.mktemp("clip")
    vocab = write_tiny_tokenizer(folder, words=("a", "photo", "red", "circle"))
    config = CLIPConfig(
        text_config=dict(vocab_size=vocab, hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=vocab - 2,
                         eos_token_id=vocab - 1, pad_token_id=vocab - 1),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                           num_attention_heads=2),
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "is not KIND:PATH"),
        ("imagereward", "is not KIND:PATH"),
        ("unknown:/x", "is not KIND:PATH"),
        ("clip:/nowhere/at/all", "does not exist"),
        ("demo:/nowhere.safetensors", "does not exist"),
        ("aesthetic:/nowhere", "needs a CLIP folder and the MLP file"),
    ],
)
def test_bad_specs_say_what_to_do(spec, message):
    with pytest.raises(RewardError, match=message):
        load_reward(spec)


def test_parse_spec_lists_every_kind_in_its_message():
    with pytest.raises(RewardError) as err:
        parse_spec("nope:x")
    assert all(kind in str(err.value) for kind in rewards.KINDS)
    assert parse_spec("Aesthetic: /a , /b") == ("aesthetic", ["/a", "/b"])


def test_clip_score_is_differentiable_and_is_100_times_the_cosine(tiny_clip):
    model = check_reward(f"clip:{tiny_clip}")
    images = torch.rand(2, 3, 40, 40, requires_grad=True) * 2 - 1
    images.retain_grad()
    score = model.reward(images, ["a red circle", "a photo"])
    assert score.shape == (2,)
    score.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    with torch.no_grad():
        img = model.image_embeds(images.detach())
        txt = model.text_embeds(["a red circle", "a photo"], "cpu")
        torch.testing.assert_close(
            model.reward(images.detach(), ["a red circle", "a photo"]), 100 * (img * txt).sum(-1)
        )
        torch.testing.assert_close(img.norm(dim=-1), torch.ones(2))
    assert model.features(images.detach()).shape == (2, 16)


def test_pickscore_uses_the_models_logit_scale(tiny_clip):
    model = load_reward(f"pickscore:{tiny_clip}")
    images = torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        cos = (model.image_embeds(images) * model.text_embeds(["a photo"], "cpu")).sum(-1)
        torch.testing.assert_close(model.reward(images, ["a photo"]), model.model.logit_scale.exp() * cos)


def test_aesthetic_predictor_head_loads_from_safetensors_and_refuses_a_wrong_file(tiny_clip, tmp_path):
    from safetensors.torch import save_file

    dims = [(16, 1024), (1024, 128), (128, 64), (64, 16), (16, 1)]
    state = {}
    for layer, (i, o) in zip((0, 2, 4, 6, 7), dims, strict=True):
        state[f"layers.{layer}.weight"] = torch.randn(o, i) * 0.01
        state[f"layers.{layer}.bias"] = torch.zeros(o)
    save_file(state, str(tmp_path / "mlp.safetensors"))
    model = check_reward(f"aesthetic:{tiny_clip},{tmp_path / 'mlp.safetensors'}")
    with torch.no_grad():
        x = model.image_embeds(torch.zeros(1, 3, 32, 32))
        expect = model.mlp(x)[:, 0]
        torch.testing.assert_close(model.reward(torch.zeros(1, 3, 32, 32), ["ignored"]), expect)
    save_file({"layers.0.weight": torch.zeros(3, 3)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(RewardError, match="not the LAION aesthetic MLP"):
        load_reward(f"aesthetic:{tiny_clip},{tmp_path / 'bad.safetensors'}")


def test_a_missing_package_is_named_with_its_pip_command(tmp_path, monkeypatch):
    ckpt = tmp_path / "ImageReward.pt"
    ckpt.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "ImageReward", None)  # "not installed"
    with pytest.raises(RewardError, match="pip install image-reward"):
        load_reward(f"imagereward:{ckpt},{ckpt}")
    monkeypatch.setitem(sys.modules, "hpsv2", None)
    monkeypatch.setitem(sys.modules, "hpsv2.src", None)
    monkeypatch.setitem(sys.modules, "hpsv2.src.open_clip", None)
    with pytest.raises(RewardError, match="pip install hpsv2"):
        load_reward(f"hpsv2:{ckpt}")


def test_imagereward_goes_through_the_packages_differentiable_score(tmp_path, monkeypatch):
    """The adapter's contract with the package (its load() and score_gard()), checked against a stand-in of it."""
    seen = {}

    class FakeBlip(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.visual_encoder = lambda x: x.flatten(2).transpose(1, 2)

    class FakeModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blip = FakeBlip()
            self.device = "cpu"

        def score_gard(self, ids, mask, image):
            seen["image"] = tuple(image.shape)
            return image.mean(dim=(1, 2, 3)).reshape(-1, 1)

    class Tokens(types.SimpleNamespace):
        def to(self, device):
            return self

    def tokenizer(prompts, **kw):
        seen["tokenizer"] = kw
        ids = torch.ones(len(prompts), kw["max_length"], dtype=torch.long)
        return Tokens(input_ids=ids, attention_mask=ids)

    fake_model = FakeModel()
    fake_model.blip.tokenizer = tokenizer
    module = types.SimpleNamespace(
        load=lambda path, device, med_config: seen.update(load=(path, med_config)) or fake_model
    )
    monkeypatch.setitem(sys.modules, "ImageReward", module)
    ckpt, med = tmp_path / "ImageReward.pt", tmp_path / "med_config.json"
    ckpt.write_bytes(b"x")
    med.write_text("{}")
    model = load_reward(f"imagereward:{ckpt},{med}")
    images = torch.zeros(2, 3, 64, 64, requires_grad=True)
    out = model.reward(images, ["a", "b"])
    out.sum().backward()
    assert seen["load"] == (str(ckpt), str(med)) and seen["image"] == (2, 3, 224, 224)
    assert seen["tokenizer"]["max_length"] == 35 and out.shape == (2,) and images.grad is not None
    with pytest.raises(RewardError, match="needs its med_config.json"):
        load_reward(f"imagereward:{ckpt}")


def test_the_demo_classifier_reward_is_log_probability_and_fidelity_is_both_attributes(tmp_path):
    from hypersd.demo.classifier import ShapeColorClassifier, save_classifier
    from hypersd.demo.domain import Label

    torch.manual_seed(0)
    save_classifier(ShapeColorClassifier(8), tmp_path / "c.safetensors")
    model = check_reward(f"demo:{tmp_path / 'c.safetensors'}")
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        shape_logits, color_logits = model.net(images)
        expect = shape_logits.log_softmax(-1)[:, 2] + color_logits.log_softmax(-1)[:, 4]
        torch.testing.assert_close(model.reward(images, ["a blue triangle", "triangle, blue"]), expect)
        hit = (shape_logits.argmax(-1) == 2) & (color_logits.argmax(-1) == 4)
        torch.testing.assert_close(model.fidelity(images, ["a blue triangle"] * 2), hit.float())
    assert Label(2, 4).caption() == "a blue triangle"
    with pytest.raises(RewardError, match="cannot read the prompt"):
        model.reward(images, ["a cat", "a dog"])
    assert model.unreadable(["a blue triangle", "a cat", "triangle, blue"]) == ["a cat"]


def test_a_reward_model_that_cannot_read_the_runs_captions_is_refused_with_what_to_use(tmp_path):
    from hypersd.demo.classifier import ShapeColorClassifier, save_classifier

    save_classifier(ShapeColorClassifier(8), tmp_path / "c.safetensors")
    spec = f"demo:{tmp_path / 'c.safetensors'}"
    check_reward(spec, prompts=["a red circle", "a blue square", "a red circle"])  # the demo's captions: fine
    with pytest.raises(RewardError, match=r"cannot score 2 of the run's captions, e.g. 'a photo of a cat'.*clip:"):
        check_reward(spec, prompts=["a red circle", "a photo of a cat", "a red house", "a photo of a cat"])


def test_the_report_goes_on_without_fidelity_when_its_scorer_cannot_read_its_prompts(tmp_path):
    from types import SimpleNamespace

    from hypersd.demo.classifier import ShapeColorClassifier, save_classifier
    from hypersd.distill import report
    from hypersd.distill.cli import report_summary

    save_classifier(ShapeColorClassifier(8), tmp_path / "c.safetensors")
    cfg = SimpleNamespace(report_scorer="", reward=f"demo:{tmp_path / 'c.safetensors'}")
    scorer, warning = report._scorer(cfg, ["a red circle"])
    assert scorer is not None and warning is None
    scorer, warning = report._scorer(cfg, ["a red circle", "a photo of a cat"])
    assert scorer is None and "'a photo of a cat'" in warning and "without prompt fidelity" in warning
    assert report._scorer(SimpleNamespace(report_scorer="", reward=""), ["x"]) == (None, None)
    summary = report_summary({"loras": {}, "cost": {"unet_calls": 0, "seconds": 0}, "warnings": [warning]})
    assert summary.splitlines()[-1] == f"  warning: {warning}"


def test_frechet_distance_matches_the_one_dimensional_closed_form_and_is_rotation_invariant():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.0, 1.0, (500, 1)), rng.normal(2.0, 3.0, (400, 1))
    s_a, s_b = a.std(ddof=1), b.std(ddof=1)
    expect = (a.mean() - b.mean()) ** 2 + (s_a - s_b) ** 2  # FD of two 1-D Gaussians
    assert frechet_distance(a, b) == pytest.approx(expect, rel=1e-9)
    x, y = rng.normal(size=(300, 3)), rng.normal(1.0, 2.0, size=(300, 3)) @ rng.normal(size=(3, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    assert frechet_distance(x @ q, y @ q) == pytest.approx(frechet_distance(x, y), rel=1e-6)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="Fréchet"):
        frechet_distance(x[:1], y)
