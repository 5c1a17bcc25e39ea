"""The training engine on a tiny random SD1.5-architecture model: views, loss reduction, exact resume, loading."""

import re

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("peft")
pytest.importorskip("accelerate")

from safetensors.torch import load_file, save_file  # noqa: E402

from hypersd import tscd  # noqa: E402
from hypersd.distill import models  # noqa: E402
from hypersd.distill.config import DistillConfig  # noqa: E402
from hypersd.distill.engine import (  # noqa: E402
    RunPaths,
    adapters_disabled,
    run_distillation,
    swapped_weights,
    teacher_mid_features,
)
from hypersd.distill.lora import add_lora, diffusers_to_ldm_module, lora_parameters  # noqa: E402
from hypersd.schedules import alphas_cumprod  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def lora_model(tiny):
    model = models.load_model(tiny)
    add_lora(model.unet, rank=8, alpha=8.0, targets="all", seed=0)
    params = [p for _, p in lora_parameters(model.unet)]
    return model, params


def _inputs(model, batch=2):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(batch, 4, 8, 8, generator=g)
    t = torch.tensor([900, 300][:batch])
    cond = models.encode_prompts(model, ["a red cat", "a blue dog"][:batch])
    return x, t, cond


def test_teacher_view_is_the_unet_without_lora_and_target_view_uses_the_ema(tiny, lora_model):
    model, params = lora_model
    x, t, cond = _inputs(model)
    base = models.load_model(tiny)
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn_like(p) * 0.2)
        reference = models.unet_eps(base.unet, x, t, cond)
        student = models.unet_eps(model.unet, x, t, cond)
        with adapters_disabled(model.unet):
            teacher = models.unet_eps(model.unet, x, t, cond)
        zeros = [torch.zeros_like(p) for p in params]
        before = [p.clone() for p in params]
        with swapped_weights(params, zeros):
            target_with_zero_lora = models.unet_eps(model.unet, x, t, cond)
    assert not torch.allclose(student, reference, atol=1e-4)
    torch.testing.assert_close(teacher, reference, atol=1e-6, rtol=0)
    torch.testing.assert_close(target_with_zero_lora, reference, atol=1e-6, rtol=0)
    assert all(torch.equal(a, b) for a, b in zip(params, before, strict=True))  # swap restored exactly
    assert all(p.requires_grad for p in params)


def test_teacher_features_pass_gradients_to_the_input_only(lora_model):
    model, params = lora_model
    x, t, cond = _inputs(model)
    x.requires_grad_(True)
    feats = teacher_mid_features(model.unet, x, t, cond)
    assert feats.shape[:2] == (2, model.unet.config.block_out_channels[-1])
    feats.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in params)  # the frozen teacher: LoRA switched off


def test_training_steps_reduce_the_loss(lora_model):
    # Overfit one fixed draw (same noise, timesteps, omega each step): the TSCD loss must fall clearly.
    model, params = lora_model
    unet = model.unet
    ema = [p.detach().clone() for p in params]
    acp, grid = alphas_cumprod(), tscd.solver_grid(40)
    x0 = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = models.encode_prompts(model, ["a red cat", "a blue dog", "tree", "sky"])
    uncond = models.encode_prompts(model, [""] * 4)

    def student(x, t, c):
        return models.unet_eps(unet, x, t, c)

    def teacher(x, t, c):
        with adapters_disabled(unet):
            return models.unet_eps(unet, x, t, c)

    def target(x, t, c):
        with swapped_weights(params, ema):
            return models.unet_eps(unet, x, t, c)

    def loss_on_fixed_draw():
        gen = torch.Generator().manual_seed(99)
        omega = tscd.sample_omega(4, 5.0, 15.0, generator=gen)
        out = tscd.tscd_step_targets(
            x0, cond, uncond, 8, student=student, teacher=teacher, target=target, acp=acp, grid=grid, omega=omega,
            generator=gen,
        )  # fmt: skip
        return torch.nn.functional.mse_loss(out["pred"], out["target"])

    optimizer = torch.optim.AdamW(params, lr=1e-3)
    with torch.no_grad():
        before = float(loss_on_fixed_draw())
    for _ in range(25):
        loss = loss_on_fixed_draw()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        tscd.ema_update(ema, params, 0.95)
    with torch.no_grad():
        after = float(loss_on_fixed_draw())
    assert before > 0
    assert after < 0.5 * before


def _cfg(tiny, data, out_dir, **kw):
    base = dict(
        model=str(tiny), data=str(data), out="run", output_dir=str(out_dir), resolution=64, stages=(8, 2),
        steps_per_stage=3, batch_size=2, rank=4, synth_steps=2, checkpoint_every=2, adversarial=True,
        learning_rate=1e-3, report="off",
    )  # fmt: skip
    base.update(kw)
    return DistillConfig(**base)


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "prompts.txt"
    path.write_text("a red cat\na blue dog\n# not a prompt\n\na green tree\n")
    return path


def _final(out_dir):
    return load_file(str(RunPaths(out_dir, "run").final_lora))


@pytest.mark.parametrize("save_on_stop", [True, False], ids=["ctrl-c", "killed"])
def test_resume_equals_an_uninterrupted_run(tiny, prompts, tmp_path, save_on_stop):
    full = run_distillation(_cfg(tiny, prompts, tmp_path / "a"), progress=False)
    assert full.steps == 6 and not full.interrupted
    stopped = run_distillation(
        _cfg(tiny, prompts, tmp_path / "b"), progress=False, stop_after_steps=3, save_on_stop=save_on_stop
    )
    assert stopped.interrupted and stopped.final_lora is None
    assert not RunPaths(tmp_path / "b", "run").final_lora.exists()  # never a finished-looking file
    # Ctrl-C saved step 3; a killed run falls back to the periodic checkpoint of step 2
    resumed = run_distillation(_cfg(tiny, prompts, tmp_path / "b"), progress=False, resume=True)
    assert resumed.steps == 6
    a, b = _final(tmp_path / "a"), _final(tmp_path / "b")
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(float(a[k].abs().max()) > 0 for k in a if "lora_up" in k)  # training moved lora_up off zero


def test_a_finished_run_is_not_overwritten_without_asking(tiny, prompts, tmp_path):
    from hypersd.distill.engine import TrainingError

    cfg = _cfg(tiny, prompts, tmp_path, stages=(1,), steps_per_stage=1, adversarial=False)
    run_distillation(cfg, progress=False)
    with pytest.raises(TrainingError, match="already exists.*--resume.*--overwrite"):
        run_distillation(cfg, progress=False)
    with pytest.raises(TrainingError, match="no checkpoint"):
        run_distillation(_cfg(tiny, prompts, tmp_path / "other"), progress=False, resume=True)


# --------------------------------------------------------------------------------------------- single-file loading


def _vae_to_ldm(name: str, n_blocks: int) -> str:
    """diffusers → ldm VAE key (the inverse of diffusers' convert_ldm_vae_checkpoint, which checks it)."""
    name = name.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
    name = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", name)
    name = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", name)
    name = re.sub(r"up_blocks\.(\d+)\.resnets\.", lambda m: f"up.{n_blocks - 1 - int(m[1])}.block.", name)
    name = re.sub(r"up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"up.{n_blocks - 1 - int(m[1])}.upsample.", name)
    name = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", name)
    name = name.replace("mid_block.attentions.0.", "mid.attn_1.")
    for new, old in (
        ("group_norm.", "norm."),
        ("to_q.", "q."),
        ("to_k.", "k."),
        ("to_v.", "v."),
        ("to_out.0.", "proj_out."),
    ):
        name = name.replace("attn_1." + new, "attn_1." + old)
    return name


def test_single_file_checkpoint_loads_like_the_diffusers_folder(tiny, tmp_path, monkeypatch):
    """A WebUI-style ldm single file of the tiny model, loaded through our offline configs path.

    The config resolution is pointed at the tiny model's configs (the shipped SD1.5/SDXL configs are checked
    against published parameter counts in test_distill_lora); the key conversion is diffusers' own.
    """
    import shutil

    reference = models.load_model(tiny)
    ckpt = {}
    for name, value in reference.unet.state_dict().items():
        module, _, leaf = name.rpartition(".")
        ckpt[f"model.diffusion_model.{diffusers_to_ldm_module(module, reference.unet.config)}.{leaf}"] = value
    n_blocks = len(reference.vae.config.down_block_types)
    for name, value in reference.vae.state_dict().items():
        ckpt["first_stage_model." + _vae_to_ldm(name, n_blocks)] = value
    for name, value in reference.text_encoders[0].state_dict().items():
        # the real ldm/WebUI layout, whatever this transformers version calls the keys
        ckpt["cond_stage_model.transformer.text_model." + name.removeprefix("text_model.")] = value
    path = tmp_path / "house.safetensors"
    save_file({k: v.contiguous() for k, v in ckpt.items()}, str(path))

    configs = tmp_path / "configs" / "sd15"
    for part in ("unet", "vae", "text_encoder"):
        (configs / part).mkdir(parents=True)
        shutil.copy(tiny / part / "config.json", configs / part / "config.json")
    monkeypatch.setattr(models, "CONFIGS", tmp_path / "configs")

    def empty_cache(repo):
        raise OSError(f"{repo} not cached")

    with monkeypatch.context() as patch:
        patch.setattr(models, "_tokenizer_from_cache", empty_cache)
        with pytest.raises(models.ModelError, match="no CLIP tokenizer.*--tokenizer FOLDER"):
            models.load_model(path, tokenizer_dir=str(tmp_path / "nowhere"))
    loaded = models.load_model(path, tokenizer_dir=str(tiny))
    assert loaded.base == "sd15"
    for a, b in (
        (loaded.unet, reference.unet),
        (loaded.vae, reference.vae),
        (loaded.text_encoders[0], reference.text_encoders[0]),
    ):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sb if k in sa)
        assert {n for n, _ in b.named_parameters()} <= set(sa)
    with pytest.raises(models.ModelError, match="mismatch"):
        models.load_model(path, base="sdxl", tokenizer_dir=str(tiny))


def test_base_detection_from_key_names():
    sd15 = {"model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.transformer.text_model.x"}
    sdxl = {"model.diffusion_model.label_emb.0.0.weight", "conditioner.embedders.1.model.ln_final.weight"}
    assert models.detect_base_from_keys(sd15) == "sd15"
    assert models.detect_base_from_keys(sdxl) == "sdxl"
    with pytest.raises(models.ModelError, match="SD2"):
        models.detect_base_from_keys({"cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"})
    with pytest.raises(models.ModelError, match="is a LoRA"):
        models.detect_base_from_keys({"lora_unet_down_blocks_0_attentions_0_proj_in.alpha"})
    with pytest.raises(models.ModelError, match="no text encoder"):
        models.detect_base_from_keys({"model.diffusion_model.input_blocks.0.0.weight"})


def test_out_of_memory_stops_with_a_message_and_keeps_the_last_checkpoint(tiny, prompts, tmp_path, monkeypatch):
    from hypersd.distill import engine

    real_step, calls = engine.train_step, []

    def step_then_oom(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(engine, "train_step", step_then_oom)
    with pytest.raises(engine.TrainingError, match="out of memory.*--batch-size.*--resume"):
        run_distillation(_cfg(tiny, prompts, tmp_path), progress=False)
    paths = RunPaths(tmp_path, "run")
    assert not paths.final_lora.exists()
    assert (paths.run_dir / "checkpoints" / "latest").read_text() == "step-000002"


def test_too_little_disk_space_is_refused_before_training(tiny, prompts, tmp_path, monkeypatch):
    import collections

    from hypersd.distill import engine

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(engine.shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 4096, 4096))
    with pytest.raises(engine.TrainingError, match="not enough disk space"):
        run_distillation(_cfg(tiny, prompts, tmp_path), progress=False)
    assert not RunPaths(tmp_path, "run").final_lora.exists()


def test_gradient_checkpointing_accumulation_and_adversarial_together(tiny, prompts, tmp_path):
    # the teacher's feature pass must not be recomputed with the LoRA on (checkpointing would otherwise fail)
    cfg = _cfg(tiny, prompts, tmp_path, stages=(1,), steps_per_stage=2, gradient_checkpointing=True, grad_accum=2)
    result = run_distillation(cfg, progress=False)
    assert result.steps == 2 and all(loss == loss for loss in result.losses)


def _open_clip_from_diffusers(state: dict, prefix: str) -> dict:
    """diffusers CLIPTextModelWithProjection → OpenCLIP (sgm) keys: the inverse of convert_open_clip_checkpoint."""
    simple = {
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.final_layer_norm.weight": "ln_final.weight",
        "text_model.final_layer_norm.bias": "ln_final.bias",
    }
    out, qkv = {}, {}
    for name, value in state.items():
        if "position_ids" in name:
            continue
        if name == "text_projection.weight":
            out[prefix + "text_projection"] = value.T
        elif name in simple:
            out[prefix + simple[name]] = value
        else:
            m = re.fullmatch(r"text_model\.encoder\.layers\.(\d+)\.(.+)", name)
            layer, rest = m[1], m[2]
            q = re.fullmatch(r"self_attn\.([qkv])_proj\.(weight|bias)", rest)
            if q:
                qkv.setdefault((layer, q[2]), {})[q[1]] = value
                continue
            for new, old in (
                ("layer_norm1", "ln_1"),
                ("layer_norm2", "ln_2"),
                ("mlp.fc1", "mlp.c_fc"),
                ("mlp.fc2", "mlp.c_proj"),
            ):
                rest = rest.replace(new, old)
            out[f"{prefix}transformer.resblocks.{layer}.{rest.replace('self_attn.', 'attn.')}"] = value
    for (layer, kind), parts in qkv.items():
        out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat(
            [parts["q"], parts["k"], parts["v"]]
        )
    return out


@pytest.mark.parametrize("base", ["sd15", "sdxl"])
def test_single_file_loader_builds_the_real_architectures_from_the_shipped_configs(tiny, base):
    """A full-size WebUI-layout checkpoint on the meta device (no memory) through load_single_file and our configs."""
    import json

    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def shipped(part):
        return json.loads((models.CONFIGS / base / part / "config.json").read_text())

    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(shipped("unet"))
        vae = AutoencoderKL.from_config(shipped("vae"))
        te = CLIPTextModel(CLIPTextConfig.from_dict(shipped("text_encoder")))
        te2 = (
            CLIPTextModelWithProjection(CLIPTextConfig.from_dict(shipped("text_encoder_2"))) if base == "sdxl" else None
        )
    ckpt = {}
    for name, value in unet.state_dict().items():
        module, _, leaf = name.rpartition(".")
        ckpt[f"model.diffusion_model.{diffusers_to_ldm_module(module, unet.config)}.{leaf}"] = value
    ckpt.update({"first_stage_model." + _vae_to_ldm(n, 4): v for n, v in vae.state_dict().items()})
    te_prefix = "cond_stage_model.transformer." if base == "sd15" else "conditioner.embedders.0.transformer."
    ckpt.update({te_prefix + n: v for n, v in te.state_dict().items()})
    if te2 is not None:
        ckpt.update(_open_clip_from_diffusers(te2.state_dict(), "conditioner.embedders.1.model."))
    assert models.detect_base_from_keys(set(ckpt)) == base

    loaded = models.load_single_file(tiny / "model.safetensors", base, tokenizer_dir=str(tiny), checkpoint=ckpt)

    def count(module):
        return sum(p.numel() for p in module.parameters())

    # published sizes: SD1.5 UNet 859,520,964 / SDXL UNet 2,567,463,684; VAE 83,653,863; CLIP-L text 123,060,480;
    # OpenCLIP bigG text + projection 694,659,840
    assert count(loaded.unet) == {"sd15": 859_520_964, "sdxl": 2_567_463_684}[base]
    assert count(loaded.vae) == 83_653_863
    assert [count(e) for e in loaded.text_encoders] == ([123_060_480] if base == "sd15" else [123_060_480, 694_659_840])
    assert len(loaded.tokenizers) == len(loaded.text_encoders)
