"""Export round trip: our kohya file loads in diffusers' load_lora_weights and reproduces the trained LoRA exactly."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("peft")

from safetensors import safe_open  # noqa: E402

from hypersd.distill import lora  # noqa: E402
from hypersd.distill.export import atomic_write, export_lora  # noqa: E402
from hypersd.distill.tiny import build_tiny_model  # noqa: E402
from hypersd.lora_metadata import lora_metadata  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=["sd15", "sdxl"])
def tiny(request, tmp_path_factory):
    base = request.param
    return base, build_tiny_model(tmp_path_factory.mktemp(base) / "model", base=base)


def _unet_inputs(base, unet):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([999, 400])
    hidden = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g)
    kwargs = {}
    if base == "sdxl":
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(2, 32, generator=g),
            "time_ids": torch.rand(2, 6) * 64,
        }
    return x, t, hidden, kwargs


def _trained_lora_unet(path, base):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(path / "unet", local_files_only=True)
    lora.add_lora(unet, rank=4, alpha=2.0, targets="all", seed=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, p in lora.lora_parameters(unet):
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)  # as if trained: lora_B no longer zero
    return unet


def test_export_loads_in_diffusers_and_reproduces_the_lora(tiny, tmp_path):
    from diffusers import DiffusionPipeline

    base, path = tiny
    unet = _trained_lora_unet(path, base)
    weights = {n: p.detach() for n, p in lora.lora_parameters(unet)}
    meta = lora_metadata(
        base=base, output_name="x", rank=4, alpha=2.0, stages=[8, 4], steps_trained=10, recommended_steps=4, gamma=0.3
    )
    out = tmp_path / "x.safetensors"
    tensors = export_lora(
        out, weights, base=base, unet_config=unet.config, metadata=meta, alpha=2.0, dtype=torch.float32
    )
    n_modules = len({k.split(".")[0] for k in tensors})
    assert n_modules == len(weights) // 2 > 50

    x, t, hidden, kwargs = _unet_inputs(base, unet)
    with torch.no_grad():
        ours = unet(x, t, encoder_hidden_states=hidden, **kwargs).sample

    pipe = DiffusionPipeline.from_pretrained(path, local_files_only=True)
    with torch.no_grad():
        plain = pipe.unet(x, t, encoder_hidden_states=hidden, **kwargs).sample
    pipe.load_lora_weights(str(out), adapter_name="hsd")
    loaded = {n for n, _ in pipe.unet.named_modules() if n.endswith(".lora_A.hsd")}
    assert len(loaded) == n_modules  # no key silently ignored by diffusers either
    with torch.no_grad():
        theirs = pipe.unet(x, t, encoder_hidden_states=hidden, **kwargs).sample
    assert not torch.allclose(plain, theirs, atol=1e-4)  # the LoRA changes the output ...
    torch.testing.assert_close(theirs, ours, atol=2e-5, rtol=1e-4)  # ... exactly as our trained LoRA does


def test_metadata_keys_are_strings_and_complete(tiny, tmp_path):
    base, path = tiny
    unet = _trained_lora_unet(path, base)
    weights = {n: p.detach() for n, p in lora.lora_parameters(unet)}
    meta = lora_metadata(
        base=base,
        output_name="y",
        rank=4,
        alpha=2.0,
        stages=[8, 4, 2, 1],
        steps_trained=40,
        recommended_steps=1,
        gamma=0.3,
    )
    out = tmp_path / "y.safetensors"
    export_lora(out, weights, base=base, unet_config=unet.config, metadata=meta, alpha=2.0)
    with safe_open(str(out), framework="pt") as handle:
        got = handle.metadata()
        keys = list(handle.keys())
        alpha = handle.get_tensor(next(k for k in keys if k.endswith(".alpha")))
    assert got["ss_base_model_version"] == {"sd15": "sd_v1", "sdxl": "sdxl_base_v1-0"}[base]
    assert (got["ss_network_dim"], got["ss_network_alpha"], got["ss_output_name"]) == ("4", "2", "y")
    assert got["ss_network_module"] == "networks.lora"
    assert got["hypersd_stages"] == "8,4,2,1" and got["hypersd_steps"] == "1" and got["hypersd_steps_trained"] == "40"
    assert (got["hypersd_sampler"], got["hypersd_scheduler"], got["hypersd_cfg"]) == ("TCD", "Trailing", "1")
    assert (got["hypersd_gamma"], got["hypersd_base"], got["hypersd_weight"]) == ("0.3", base, "1.0")
    assert "hypersd_version" in got
    assert float(alpha) == 2.0
    prefix = "lora_unet_down_blocks_" if base == "sd15" else "lora_unet_input_blocks_"
    assert any(k.startswith(prefix) for k in keys)
    assert all(k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha")) for k in keys)


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "final.safetensors"

    def fail(tmp):
        with open(tmp, "wb") as handle:
            handle.write(b"half")
        raise OSError(28, "No space left on device")

    from hypersd.distill.export import ExportError

    with pytest.raises(ExportError, match="no disk space"):
        atomic_write(target, fail)
    assert list(tmp_path.iterdir()) == []
