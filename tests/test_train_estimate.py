"""hypersd.train.estimate: LoRA size from the real UNet configs, and the disk the engine will need."""

import collections
import json
import shutil

import pytest

from hypersd.train import estimate

# The published unet/config.json of runwayml/stable-diffusion-v1-5 and stabilityai/stable-diffusion-xl-base-1.0
# (keys that shape the network; the rest are diffusers' defaults).
SD15_UNET = {
    "_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False, "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}  # fmt: skip
SDXL_UNET = {
    "_class_name": "UNet2DConditionModel", "act_fn": "silu", "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64, "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280], "center_input_sample": False, "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"], "downsample_padding": 1,
    "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1,
    "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128, "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "use_linear_projection": True,
}  # fmt: skip
UNETS = {"sd15": SD15_UNET, "sdxl": SDXL_UNET}
TARGETS = ("attn", "attn_ff", "all")


def hand_count(cfg, targets):
    """Rank-1 LoRA parameters by hand from the UNet2DConditionModel layout: a Linear adds in + out, a Conv2d
    in·kh·kw + out. Transformer block: self-attention q, k, v, out (c → c), cross-attention q, out (c → c) and k, v
    (cross_attention_dim → c), GEGLU feed-forward c → 8c and 4c → c; proj_in / proj_out c → c per transformer.
    ResNet: conv1 3×3, conv2 3×3, time_emb_proj (4·c0 → c), a 1×1 shortcut when the channels change;
    down/up samplers 3×3 c → c. Up-block ResNets also take the skip connection's channels."""
    channels, per_block, cross = cfg["block_out_channels"], cfg["layers_per_block"], cfg["cross_attention_dim"]
    layers = cfg.get("transformer_layers_per_block", 1)
    layers = [layers] * len(channels) if isinstance(layers, int) else layers
    time_dim = 4 * channels[0]
    counts = collections.Counter()

    def transformer(c, n):
        counts["attn"] += n * (4 * 2 * c + 2 * c + 2 * (cross + c) + 2 * c)
        counts["ff"] += n * ((c + 8 * c) + (4 * c + c)) + 2 * (c + c)

    def resnet(c_in, c_out):
        counts["res"] += (c_in * 9 + c_out) + (c_out * 9 + c_out) + (time_dim + c_out)
        counts["res"] += (c_in + c_out) if c_in != c_out else 0

    def sampler(c):
        counts["res"] += c * 9 + c

    last = len(channels) - 1
    previous = channels[0]
    for i, kind in enumerate(cfg["down_block_types"]):
        for j in range(per_block):
            resnet(previous if j == 0 else channels[i], channels[i])
            if kind.startswith("CrossAttn"):
                transformer(channels[i], layers[i])
        if i < last:
            sampler(channels[i])
        previous = channels[i]
    resnet(channels[-1], channels[-1])
    resnet(channels[-1], channels[-1])
    transformer(channels[-1], layers[-1])
    up_channels, up_layers = channels[::-1], layers[::-1]
    previous = up_channels[0]
    for i, kind in enumerate(cfg["up_block_types"]):
        out, block_in = up_channels[i], up_channels[min(i + 1, last)]
        for j in range(per_block + 1):
            skip = block_in if j == per_block else out
            resnet((previous if j == 0 else out) + skip, out)
            if kind.startswith("CrossAttn"):
                transformer(out, up_layers[i])
        if i < last:
            sampler(out)
        previous = out
    parts = {"attn": ("attn",), "attn_ff": ("attn", "ff"), "all": ("attn", "ff", "res")}[targets]
    return sum(counts[p] for p in parts)


# ------------------------------------------------------------------------------------------------ the constants


@pytest.mark.parametrize("base", ["sd15", "sdxl"])
@pytest.mark.parametrize("targets", TARGETS)
def test_constants_match_the_hand_count(base, targets):
    assert estimate.PARAMS_PER_RANK[(base, targets)] == hand_count(UNETS[base], targets)


def test_sd15_attention_count_written_out():
    # 16 transformer blocks (c = 320×5, 640×5, 1280×6), each 14c + 2·768: 14·12480 + 1536·16
    assert estimate.PARAMS_PER_RANK[("sd15", "attn")] == 14 * (5 * 320 + 5 * 640 + 6 * 1280) + 1536 * 16 == 199_296


def test_the_shipped_unet_configs_are_the_published_ones():
    from hypersd.distill.models import CONFIGS

    for base, published in UNETS.items():
        shipped = json.loads((CONFIGS / base / "unet" / "config.json").read_text())
        assert {key: shipped.get(key) for key in published} == published, base


def test_constants_match_peft_on_the_real_unets_on_the_meta_device():
    """The independent source: diffusers builds each full-size UNet without weights, add_lora wraps it with peft."""
    pytest.importorskip("diffusers")
    pytest.importorskip("peft")
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    from hypersd.distill.lora import add_lora, lora_parameters

    def lora_count(base, rank, targets):
        with init_empty_weights():
            unet = UNet2DConditionModel.from_config(UNETS[base])
        assert next(unet.parameters()).device.type == "meta"
        add_lora(unet, rank=rank, alpha=rank, targets=targets)
        return sum(p.numel() for _, p in lora_parameters(unet))

    for (base, targets), per_rank in estimate.PARAMS_PER_RANK.items():
        assert lora_count(base, 1, targets) == per_rank, (base, targets)
    assert lora_count("sd15", 4, "attn") == 4 * estimate.PARAMS_PER_RANK[("sd15", "attn")]  # linear in the rank


def test_discriminator_count_matches_the_engine_module():
    from hypersd.distill.views import Discriminator

    assert estimate.discriminator_parameter_count() == sum(p.numel() for p in Discriminator(1280).parameters())
    assert estimate.discriminator_parameter_count(64, 32) == sum(p.numel() for p in Discriminator(64, 32).parameters())


# ------------------------------------------------------------------------------------------------ sizes


def test_lora_parameter_count_is_linear_in_the_rank_and_refuses_bad_input():
    assert estimate.lora_parameter_count("sdxl", 8, "attn") == 8 * 1_451_520
    assert estimate.lora_parameter_count("sd15", 64) == 64 * 1_050_816  # "all" is the engine's default
    with pytest.raises(ValueError, match="Hyper-SD: no size estimate for base 'sd2'"):
        estimate.lora_parameter_count("sd2", 4)
    with pytest.raises(ValueError, match="targets one of all, attn, attn_ff"):
        estimate.lora_parameter_count("sd15", 4, "convs")
    for rank in (0, -1, 1.5, True, "8"):
        with pytest.raises(ValueError, match="Hyper-SD: the LoRA rank must be a whole number"):
            estimate.lora_parameter_count("sd15", rank)


def test_disk_needed_by_hand():
    p = 64 * 1_050_816  # SD1.5, rank 64, all targets: 67.3 M parameters, 134.5 MB in fp16
    mib = 2**20
    # 4 stage LoRAs + the final one in fp16, two checkpoints of 5 fp32 copies, 64 MiB slack
    assert estimate.disk_needed("sd15", 64, "all", 4) == 5 * 2 * p + 2 * 20 * p + 64 * mib
    disc = 1280 * 128 * 9 + 128 + 128 * 128 * 9 + 128 + 4 * 128 + 128 + 1
    assert disc == 1_622_913
    assert (
        estimate.disk_needed("sd15", 64, "all", 4, adversarial=True) == 5 * 2 * p + 2 * (20 * p + 12 * disc) + 64 * mib
    )
    assert estimate.disk_needed("sdxl", 1, "attn", 1) == 2 * 2 * 1_451_520 + 2 * 20 * 1_451_520 + 64 * mib
    assert estimate.disk_needed_for(1000, 3) == 4 * 2000 + 2 * 20_000 + 64 * mib


# ------------------------------------------------------------------------------------------------ the check


def fake_usage(monkeypatch, free):
    seen = []
    usage = collections.namedtuple("usage", "total used free")

    def disk_usage(path):
        seen.append(path)
        return usage(10 * free + 1, 0, free)

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    return seen


def test_check_disk_measures_the_nearest_existing_folder(tmp_path, monkeypatch):
    seen = fake_usage(monkeypatch, 100 * 2**20)
    assert estimate.check_disk(tmp_path / "not" / "made" / "yet", 100 * 2**20) is None  # exactly enough
    assert seen == [tmp_path.resolve()]


def test_check_disk_says_how_much_is_free_and_needed(tmp_path, monkeypatch):
    fake_usage(monkeypatch, 5 * 2**20)
    message = estimate.check_disk(tmp_path, 1536 * 2**20)
    assert message.startswith(f"Hyper-SD: not enough disk space for {tmp_path.resolve()}: 5 MiB free, about 1,536 MiB")
    assert "lower the LoRA rank, or use fewer stages" in message
    assert estimate.check_disk(tmp_path, 5 * 2**20 + 1) is not None


def test_check_disk_on_the_real_disk(tmp_path):
    assert estimate.check_disk(tmp_path, 1) is None
    assert "MiB free" in estimate.check_disk(tmp_path, shutil.disk_usage(tmp_path).total + 2**40)


def test_the_engine_refuses_with_the_same_number(tmp_path, monkeypatch):
    """engine._free_disk_check uses disk_needed_for + check_disk: one byte short of the estimate is refused."""
    from hypersd.distill.engine import RunPaths, TrainingError, _free_disk_check

    params = estimate.lora_parameter_count("sd15", 16, "all")
    need = estimate.disk_needed("sd15", 16, "all", 4, adversarial=True)
    paths = RunPaths(tmp_path / "out", "x")
    fake_usage(monkeypatch, need)
    _free_disk_check(paths, params, 4, True)
    fake_usage(monkeypatch, need - 1)
    with pytest.raises(TrainingError, match="not enough disk space"):
        _free_disk_check(paths, params, 4, True)
