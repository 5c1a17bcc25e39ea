"""The stage-based trainer on a tiny random SD1.5-architecture model: score distillation, human feedback, exact resume
across them, refusals before the first step, and the quality report written into the LoRAs."""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("peft")
pytest.importorskip("accelerate")

from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from hypersd import tscd  # noqa: E402
from hypersd.distill import models, stage_dmd  # noqa: E402
from hypersd.distill.config import DistillConfig  # noqa: E402
from hypersd.distill.engine import RunPaths, TrainingError, run_distillation  # noqa: E402
from hypersd.distill.lora import add_lora, lora_parameters  # noqa: E402
from hypersd.distill.views import active_adapter, adapters_disabled  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "prompts.txt"
    path.write_text("a red circle\na blue square\n")
    return path


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    from hypersd.demo.classifier import ShapeColorClassifier, save_classifier

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("reward") / "classifier.safetensors"
    save_classifier(ShapeColorClassifier(8), path)
    return path


def _steps_logged(log):
    if not log.exists():
        return False
    return any(json.loads(line)["event"] == "step" for line in log.read_text().splitlines())


def _cfg(tiny, data, out_dir, **kw):
    base = dict(
        model=str(tiny), data=str(data), out="run", output_dir=str(out_dir), resolution=64, stages=(2, "dmd"),
        steps_per_stage=3, batch_size=2, rank=4, synth_steps=2, checkpoint_every=2, learning_rate=1e-3,
        dmd_regression_pairs=4, dmd_regression_steps=2, dmd_fake_updates=2, report="off",
    )  # fmt: skip
    base.update(kw)
    return DistillConfig(**base)


def _dmd_stage(cfg):
    """The trainer state of a run set up (not trained) with ``cfg`` and its prepared score-distillation stage."""
    from hypersd.distill import engine
    from hypersd.distill.stage_dmd import DMDStage

    run = engine._Run(cfg, __import__("accelerate").Accelerator(cpu=True))
    state = engine._setup(run, None)
    stage = next(s for s in run.stages if isinstance(s, DMDStage))
    stage.ensure_prepared(state)
    return state, stage


def _move_student_off_the_teacher(state):
    with torch.no_grad():
        for p in state.params:
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))


def test_the_fake_score_is_a_second_adapter_on_the_same_unet(tiny):
    model = models.load_model(tiny)
    unet = model.unet
    add_lora(unet, 4, 4.0, "all", seed=0)
    add_lora(unet, 4, 4.0, "all", seed=1, adapter_name="hypersd_fake")
    student, fake = lora_parameters(unet), lora_parameters(unet, "hypersd_fake")
    assert len(student) == len(fake) > 0 and not {id(p) for _, p in student} & {id(p) for _, p in fake}
    params_before = sum(p.numel() for p in unet.parameters() if not p.requires_grad)
    assert params_before == sum(p.numel() for p in models.load_model(tiny).unet.parameters())  # no second UNet
    with torch.no_grad():
        for _, p in fake:
            p.add_(torch.randn_like(p) * 0.2)
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 4, 8, 8, generator=g), torch.tensor([900, 100])
    cond = models.encode_prompts(model, ["a red circle", "a blue square"])
    with torch.no_grad():
        as_student = models.unet_eps(unet, x, t, cond)  # the student's B is still zero: the teacher
        with adapters_disabled(unet):
            teacher = models.unet_eps(unet, x, t, cond)
        with active_adapter(unet, "hypersd_fake"):
            as_fake = models.unet_eps(unet, x, t, cond)
    torch.testing.assert_close(as_student, teacher, atol=1e-6, rtol=0)
    assert not torch.allclose(as_fake, teacher, atol=1e-4)
    # a loss through the fake view reaches only the fake adapter, and the student is active again after it
    with active_adapter(unet, "hypersd_fake"):
        models.unet_eps(unet, x, t, cond).square().mean().backward()
    assert all(p.grad is not None for _, p in fake) and all(p.grad is None for _, p in student)
    layers = [m for m in unet.modules() if hasattr(m, "_active_adapter")]
    assert layers and all(list(m._active_adapter) == ["hypersd"] for m in layers)


def test_distribution_matching_moves_nothing_while_the_fake_score_equals_the_real_one(tiny, prompts, tmp_path):
    """DMD's gradient is x0_fake - x0_real: with an untrained fake adapter (= teacher) and the real score without
    guidance (CFG 1: the teacher itself) the target is x0 exactly; after one fake-score update it is not."""

    cfg = _cfg(tiny, prompts, tmp_path, dmd_guidance=1.0, dmd_regression_weight=0.0)
    state, stage = _dmd_stage(cfg)
    batch = state.batch()
    x0 = torch.randn(batch.x0.shape, generator=torch.Generator().manual_seed(3))
    target, _ = stage.matching_target(state, x0, batch)
    torch.testing.assert_close(target, x0, atol=1e-5, rtol=0)
    stage.fake_update(state, x0, batch.cond)
    target, _ = stage.matching_target(state, x0, batch)
    assert (target - x0).abs().max() > 1e-4


def test_score_distillation_then_feedback_resume_equals_an_uninterrupted_run(
    tiny, prompts, classifier, tmp_path, monkeypatch
):
    monkeypatch.setattr(stage_dmd, "PAIR_CHUNK_BATCHES", 1)  # the 4 pairs in chunks of one batch (2)
    kw = dict(stages=(2, "dmd", "feedback"), reward=f"demo:{classifier}", feedback_steps=(1, 2), dmd_fake_warmup=2)
    full = run_distillation(_cfg(tiny, prompts, tmp_path / "a", **kw), progress=False)
    assert full.steps == 9 and not full.interrupted
    # stop inside the feedback stage: the checkpoint must hold the fake score (adapter + optimiser) and the pairs
    stopped = run_distillation(_cfg(tiny, prompts, tmp_path / "b", **kw), progress=False, stop_after_steps=7)
    assert stopped.interrupted
    state = torch.load(
        RunPaths(tmp_path / "b", "run").run_dir / "checkpoints" / "step-000007" / "state.pt", weights_only=False
    )
    dmd_state = state["stage_states"]["dmd"]
    assert dmd_state["fake"] and dmd_state["fake_opt"]["state"] and dmd_state["pairs"]["noise"].shape[0] == 4

    def not_again(*_):
        raise AssertionError("a resumed score-distillation stage computed its regression pairs again")

    monkeypatch.setattr(stage_dmd.DMDStage, "_regression_pairs", not_again)  # they come from the checkpoint
    resumed = run_distillation(_cfg(tiny, prompts, tmp_path / "b", **kw), progress=False, resume=True)
    assert resumed.steps == 9
    for name in ("run.safetensors", "run-unified.safetensors", "run-feedback.safetensors", "run-2step.safetensors"):
        a, b = load_file(str(tmp_path / "a" / name)), load_file(str(tmp_path / "b" / name))
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a), name
    events = [json.loads(line) for line in RunPaths(tmp_path / "a", "run").log.read_text().splitlines()]
    steps = [e for e in events if e["event"] == "step"]
    assert [e["stage"] for e in steps] == [2, 2, 2, "dmd", "dmd", "dmd", "feedback", "feedback", "feedback"]
    assert all("loss_fake" in e and "loss_dm" in e and "loss_reg" in e for e in steps if e["stage"] == "dmd")
    # the teacher's results for the 4 regression pairs come in chunks, each logged
    assert [(e["stage"], e["done"], e["of"]) for e in events if e["event"] == "prepare"] == [
        ("dmd", 2, 4),
        ("dmd", 4, 4),
    ]
    assert all("reward" in e and "loss_reward" in e for e in steps if e["stage"] == "feedback")
    with safe_open(str(tmp_path / "a" / "run-unified.safetensors"), framework="pt") as handle:
        meta = handle.metadata()
    assert meta["hypersd_kind"] == "unified" and meta["hypersd_gamma"] == "1" and meta["hypersd_stages"] == "2,dmd"


def test_resuming_a_run_whose_stages_are_done_only_reports_and_exports(tiny, prompts, tmp_path, monkeypatch):
    """A run stopped (or failed) in its quality report: --resume sets no stage up again (the score distillation's
    regression pairs are minutes of teacher sampling on a real model) and writes the same final LoRA."""
    first = run_distillation(_cfg(tiny, prompts, tmp_path), progress=False)
    final = load_file(str(first.final_lora))
    first.final_lora.unlink()

    def no_setup(*_):
        raise AssertionError("a finished stage was set up again")

    monkeypatch.setattr(stage_dmd.DMDStage, "prepare", no_setup)
    again = run_distillation(_cfg(tiny, prompts, tmp_path), progress=False, resume=True)
    assert again.steps == first.steps == 6 and not again.interrupted
    resumed = load_file(str(again.final_lora))
    assert set(resumed) == set(final) and all(torch.equal(resumed[k], final[k]) for k in final)
    events = [json.loads(line)["event"] for line in RunPaths(tmp_path, "run").log.read_text().splitlines()]
    assert events.count("done") == 2 and events[-3:] == ["resume", "export", "done"]


def test_the_fake_scores_warm_up_starts_each_stage_that_trains_it(tiny, prompts, classifier, tmp_path, monkeypatch):
    calls = []
    original = stage_dmd.DMDStage.fake_update
    monkeypatch.setattr(stage_dmd.DMDStage, "fake_update", lambda self, *a: calls.append(1) or original(self, *a))
    cfg = _cfg(tiny, prompts, tmp_path, stages=(2, "dmd", "feedback"), reward=f"demo:{classifier}",
               feedback_steps=(1,), steps_per_stage=2, dmd_fake_warmup=3, dmd_fake_updates=2)  # fmt: skip
    run_distillation(cfg, progress=False)
    assert len(calls) == 2 * 3 + (2 + 2) * 2  # a warm-up at dmd's and at feedback's start, 2 per student update


def test_the_student_learns_its_own_outputs_under_score_distillation(tiny, prompts, tmp_path):
    """A few DMD steps change the student, and the fake score moves away from the teacher (two adapters train)."""
    result = run_distillation(_cfg(tiny, prompts, tmp_path, stages=("dmd",), steps_per_stage=2), progress=False)
    weights = load_file(str(tmp_path / "run-unified.safetensors"))
    assert any(float(v.abs().max()) > 0 for k, v in weights.items() if "lora_up" in k)
    assert all(loss == loss for loss in result.losses)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"learning_rate": -0.001}, "learning_rate must be above 0"),
        ({"stages": ("dmd", 2)}, "dmd starts from the TSCD student"),
        ({"stages": (2, "feedback", "dmd")}, "feedback is the last stage"),
        ({"stages": (2, "feedback")}, "needs a reward model"),
        ({"stages": (2, "sdm")}, "unknown stage"),
        ({"stage_steps": {"dmd": 0}}, r"stage_steps\['dmd'\] must be a whole number"),
        ({"stage_steps": {"feedback": 3}}, "not in stages"),
    ],
)
def test_bad_settings_are_refused_before_anything_loads(tiny, prompts, tmp_path, overrides, message):
    from hypersd.distill.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        run_distillation(_cfg(tiny, prompts, tmp_path, **overrides), progress=False)
    assert not tmp_path.joinpath("run.run").exists()


def test_a_missing_or_wrong_reward_model_stops_the_run_before_training(tiny, prompts, tmp_path):
    from hypersd.distill.rewards import RewardError

    with pytest.raises(RewardError, match="does not exist"):
        run_distillation(_cfg(tiny, prompts, tmp_path, stages=(2, "feedback"), reward="demo:/nowhere/c.safetensors"))
    not_a_classifier = tmp_path / "unet.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(not_a_classifier))
    with pytest.raises(RewardError, match="not the demo classifier"):
        run_distillation(_cfg(tiny, prompts, tmp_path, stages=(2, "feedback"), reward=f"demo:{not_a_classifier}"))
    assert not _steps_logged(RunPaths(tmp_path, "run").log)
    assert not [p for p in tmp_path.glob("*.safetensors") if p != not_a_classifier]


def test_a_reward_model_that_cannot_read_the_captions_stops_the_run_before_training(tiny, classifier, tmp_path):
    from hypersd.distill.rewards import RewardError

    captions = tmp_path / "prompts.txt"
    captions.write_text("a red circle\na photo of a cat\n")
    cfg = _cfg(tiny, captions, tmp_path, stages=(2, "feedback"), reward=f"demo:{classifier}")
    with pytest.raises(RewardError, match="'a photo of a cat'"):
        run_distillation(cfg, progress=False)
    assert not _steps_logged(RunPaths(tmp_path, "run").log)
    assert not list(tmp_path.glob("*.safetensors"))


def test_a_unet_whose_lora_would_not_load_in_webui_is_refused_before_the_first_step(tmp_path, prompts):
    """A UNet with another block layout (1 layer per block): WebUI's SD1.5 name rules would put its LoRA keys on
    the wrong modules. Refused before training, and no LoRA file is left behind."""
    import json as _json

    from hypersd.distill.tiny import build_tiny_model

    model = build_tiny_model(tmp_path / "odd", base="sd15")
    config_path = model / "unet" / "config.json"
    config = _json.loads(config_path.read_text())
    config["layers_per_block"] = 1
    config_path.write_text(_json.dumps(config))
    from diffusers import UNet2DConditionModel

    UNet2DConditionModel(**{k: v for k, v in config.items() if not k.startswith("_")}).save_pretrained(model / "unet")
    with pytest.raises(TrainingError, match="would not load onto the right WebUI module.*standard SD1.5"):
        run_distillation(_cfg(model, prompts, tmp_path / "out", stages=(1,)), progress=False)
    assert not _steps_logged(RunPaths(tmp_path / "out", "run").log)
    assert not list((tmp_path / "out").glob("*.safetensors"))


def test_the_quality_report_measures_every_lora_and_writes_its_settings(tiny, prompts, classifier, tmp_path, capsys):
    cfg = _cfg(tiny, prompts, tmp_path, stages=(2, 1, "dmd"), steps_per_stage=2, report="quick", report_noises=2,
               report_samples=3, report_steps=(1, 2), report_scorer=f"demo:{classifier}")  # fmt: skip
    result = run_distillation(cfg, progress=True)
    console = capsys.readouterr().err  # not a terminal: plain lines, also for the minutes outside the steps
    for line in ("Hyper-SD: step 6/6, stage dmd", "Hyper-SD: stage dmd: preparing the teacher's 2-step results",
                 "Hyper-SD: quality report: measuring the teacher (1/4)",
                 "Hyper-SD: quality report: measuring the dmd LoRA (4/4)"):  # fmt: skip
        assert line in console, console
    report = json.loads((RunPaths(tmp_path, "run").run_dir / "report.json").read_text())
    assert set(report["loras"]) == {"2", "1", "dmd"} and report["samples"] == 3
    assert report["teacher"]["25"]["frechet"] > 0  # its reference: the teacher's images from other noises
    for name, lora in report["loras"].items():
        assert {row["steps"] for row in lora["grid"]} == {1, 2} and len(lora["grid"]) == 2 * 3  # 3 TCD gammas
        assert set(lora["best"]) == {"1", "2"}
        best = lora["best"]["1"]
        assert {"latent_mse", "pixel_mse", "fidelity", "frechet", "reward"} <= set(best)
        chosen = min((r for r in lora["grid"] if r["steps"] == 1), key=lambda r: r["pixel_mse"])
        if lora["kind"] == "per-step":
            assert (best["sampler"], best["gamma"]) == (chosen["sampler"], chosen["gamma"])
        rec = lora["recommended"]
        with safe_open(lora["file"], framework="pt") as handle:
            meta = handle.metadata()
        assert meta["hypersd_measured"] == "1" and meta["hypersd_steps"] == str(rec["steps"])
        assert float(meta["hypersd_gamma"]) == pytest.approx(rec["gamma"]) and meta["hypersd_sampler"] == rec["sampler"]
        if name == "2":
            assert rec["steps"] == 2  # a per-step LoRA keeps its own step count
        if lora["kind"] == "unified":  # chosen by fidelity, then Fréchet distance, then error
            rows = [r for r in lora["grid"] if r["steps"] == 2]
            pick = max(rows, key=lambda r: (r["fidelity"], -r["frechet"], -r["pixel_mse"]))
            assert (lora["best"]["2"]["sampler"], lora["best"]["2"]["gamma"]) == (pick["sampler"], pick["gamma"])
    with safe_open(str(result.final_lora), framework="pt") as handle:  # the final LoRA carries the last stage's
        assert handle.metadata()["hypersd_steps"] == str(report["recommended"]["dmd"]["steps"])
    page = (RunPaths(tmp_path, "run").run_dir / "report.html").read_text()
    assert "data:image/png;base64," in page and "<svg" in page and "Fréchet" in page
    assert report["cost"]["unet_calls"] > 0
    events = [json.loads(line) for line in RunPaths(tmp_path, "run").log.read_text().splitlines()]
    said = [(e["what"], e["done"], e["of"]) for e in events if e["event"] == "report_progress"]
    assert said == [("the teacher", 0, 4), ("the k=2 LoRA", 1, 4), ("the k=1 LoRA", 2, 4), ("the dmd LoRA", 3, 4)]


def test_a_report_scorer_that_cannot_read_the_report_prompts_is_left_out_with_a_warning(
    tiny, prompts, classifier, tmp_path
):
    cfg = _cfg(tiny, prompts, tmp_path, stages=(2,), steps_per_stage=1, report="quick", report_noises=2,
               report_samples=2, report_steps=(1,), report_scorer=f"demo:{classifier}",
               report_prompts=("a photo of a cat",))  # fmt: skip
    run_distillation(cfg, progress=False)
    run_dir = RunPaths(tmp_path, "run").run_dir
    report = json.loads((run_dir / "report.json").read_text())
    assert report["scorer"] is None and "fidelity" not in report["loras"]["2"]["best"]["1"]
    assert len(report["warnings"]) == 1 and "'a photo of a cat'" in report["warnings"][0]
    assert "Warnings" in (run_dir / "report.html").read_text()


def test_guided_ddim_sample_is_the_teachers_cfg_ddim_loop():
    """Against the DDIM update written out from the formula, step by step."""
    from hypersd.schedules import alphas_cumprod, trailing_timesteps

    acp = alphas_cumprod()

    def teacher(x, t, c):  # a nonlinear stand-in; cond and uncond arrive as one batch of 2B
        return torch.tanh(x * c.view(-1, 1, 1, 1) + t.view(-1, 1, 1, 1).double() / 1000)

    cond, uncond = torch.tensor([1.5, 0.5]), torch.tensor([0.2, 0.1])
    x = torch.randn(2, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = tscd.guided_ddim_sample(teacher, x, cond, uncond, 3, 2.5, acp)
    expect = x.clone()
    ts = trailing_timesteps(3)
    for i, t in enumerate(ts):
        e_c = torch.tanh(expect * cond.view(-1, 1, 1, 1) + t / 1000)
        e_u = torch.tanh(expect * uncond.view(-1, 1, 1, 1) + t / 1000)
        eps = e_u + 2.5 * (e_c - e_u)
        a = acp[t]
        a_next = acp[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, dtype=torch.float64)
        x0 = (expect - (1 - a).sqrt() * eps) / a.sqrt()
        expect = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
    torch.testing.assert_close(got, expect, atol=1e-10, rtol=0)


def test_multistep_regression_timesteps_are_the_later_points_of_the_unified_trailing_grids():
    # diffusers' trailing spacing: 2 steps [999, 499], 4 steps [999, 749, 499, 249]; the first point is the
    # 1-step batch's, so the later batch never draws 999
    drawn = stage_dmd.later_timesteps(1200, (1, 2, 4), torch.Generator().manual_seed(0)).tolist()
    assert set(drawn) == {749, 499, 249}
    assert abs(drawn.count(499) / len(drawn) - (1 / 2 + 1 / 6)) < 0.05  # n uniform over {2, 4}, then a later step
    assert set(stage_dmd.later_timesteps(50, (1, 2), torch.Generator().manual_seed(0)).tolist()) == {499}


@pytest.mark.parametrize("multistep", [False, True])
def test_the_regression_starts_from_the_pairs_noise_or_from_its_teacher_result_noised_to_a_grid_point(
    tiny, prompts, tmp_path, multistep
):
    cfg = _cfg(tiny, prompts, tmp_path, dmd_regression_multistep=multistep, unified_steps=(1, 4), batch_size=4)
    state, stage = _dmd_stage(cfg)
    seen = [stage.regression_inputs(state)[:2] for _ in range(6)]  # the student's inputs: (x_in, t)
    noise, target = stage.pairs["noise"], stage.pairs["target"].float()
    timesteps = set()
    for x, t in seen:
        for row, step in zip(x, t.tolist(), strict=True):
            timesteps.add(step)
            expected = noise if step == 999 else tscd.add_noise(target, noise, torch.full((len(noise),), step),
                                                                 state.acp)  # fmt: skip
            assert min(float((row - e).abs().max()) for e in expected) < 1e-5
    assert timesteps == ({999, 749, 499, 249} if multistep else {999})
    # the 1-step batch is whole in both; multistep adds a second batch at the later points
    assert all(len(t) == (8 if multistep else 4) and set(t[:4].tolist()) == {999} for _, t in seen)
    assert not multistep or all(999 not in t[4:].tolist() for _, t in seen)


def test_the_students_two_predictions_in_one_call_equal_two_calls(tiny, prompts, tmp_path):
    cfg = _cfg(tiny, prompts, tmp_path, dmd_regression_multistep=True, unified_steps=(1, 4), batch_size=4)
    state, stage = _dmd_stage(cfg)
    _move_student_off_the_teacher(state)
    batch = state.batch()
    x_in, t_in = stage.student_input(state, batch)
    reg = stage.regression_inputs(state)
    calls = []
    student = state.student
    state.student = lambda x, t, c: calls.append(len(x)) or student(x, t, c)
    together, together_reg = stage.student_x0_rows(state, [x_in, reg[0]], [t_in, reg[1]], [batch.cond, reg[2]])
    assert calls == [4 + 8]
    alone = tscd.predict_x0(x_in, student(x_in, t_in, batch.cond), t_in, state.acp)
    alone_reg = tscd.predict_x0(reg[0], student(reg[0], reg[1], reg[2]), reg[1], state.acp)
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(together_reg, alone_reg, rtol=1e-4, atol=1e-5)


def test_batched_trajectories_equal_one_batch_at_a_time(tiny, prompts, tmp_path, monkeypatch):
    """The warm-up runs many batches' backward simulations in lockstep; each must be what it would be alone, with
    the same random draws (n, the stop step, the re-noising) in the same order, also in chunks of a few rows."""
    from hypersd.distill import models
    from hypersd.schedules import trailing_timesteps

    cfg = _cfg(tiny, prompts, tmp_path, unified_steps=(1, 2, 4, 8), batch_size=2)
    state, stage = _dmd_stage(cfg)
    _move_student_off_the_teacher(state)
    state.generators["noise"].manual_seed(5)
    plans = [stage.draw_trajectory(state, torch.randn(2, 4, 8, 8), state.batch().cond) for _ in range(8)]
    assert len({p.stop for p in plans}) > 1 and len({p.n for p in plans}) > 1  # trajectories of different lengths
    alone = [stage.run_trajectories(state, [p])[0] for p in plans]
    monkeypatch.setattr(models, "CALL_LATENT_PIXELS", 3 * 8 * 8)  # at most 3 rows per call
    together = stage.run_trajectories(state, plans)
    for (x, t), (x1, t1), plan in zip(together, alone, plans, strict=True):
        assert torch.equal(t, t1) and int(t[0]) == trailing_timesteps(plan.n)[plan.stop]
        torch.testing.assert_close(x, x1, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("unified_ema", [True, False])
def test_the_unified_lora_is_written_as_its_ema_and_the_tscd_loras_as_trained(tiny, prompts, tmp_path, monkeypatch,
                                                                                unified_ema):  # fmt: skip
    from hypersd.distill import engine

    seen, original = [], engine.export_lora

    def export_lora(path, weights, **kw):
        state = captured["state"]
        seen.append((path.stem, {n: w.clone() for n, w in weights.items()},
                     {n: p.detach().cpu().clone() for n, p in state.named}, [e.cpu().clone() for e in state.ema]))  # fmt: skip
        return original(path, weights, **kw)

    captured, export = {}, engine._export

    def _export(run, state, *a, **kw):
        captured["state"] = state
        return export(run, state, *a, **kw)

    monkeypatch.setattr(engine, "export_lora", export_lora)
    monkeypatch.setattr(engine, "_export", _export)
    cfg = _cfg(tiny, prompts, tmp_path, stages=(1, "dmd"), steps_per_stage=2, ema_decay=0.5,
               unified_export_ema=unified_ema)  # fmt: skip
    run_distillation(cfg, progress=False)
    kinds = {"run-1step": False, "run-unified": unified_ema, "run": unified_ema}  # "run": the final (last stage's)
    assert {stem for stem, *_ in seen} == set(kinds)
    for stem, weights, params, ema in seen:
        names = list(params)
        assert any(not torch.equal(params[n], e) for n, e in zip(names, ema, strict=True))  # they differ here
        expect = dict(zip(names, ema, strict=True)) if kinds[stem] else params
        assert all(torch.equal(weights[n], expect[n]) for n in names), stem
