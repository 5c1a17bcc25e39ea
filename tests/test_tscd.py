"""hypersd.tscd: segment sampling (property tests), VP algebra against diffusers' DDIMScheduler, one TSCD step."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hypersd import tscd
from hypersd.schedules import alphas_cumprod

ACP = alphas_cumprod()
T = 1000

# (N, k) pairs with N % k == 0 and N | T.
grid_and_k = st.sampled_from([(n, k) for n in (8, 10, 20, 40, 50, 100) for k in (1, 2, 4, 8) if n % k == 0])


# --------------------------------------------------------------------------------------------- grid


def test_solver_grid_is_multiples_of_the_cell_including_zero():
    assert tscd.solver_grid(4).tolist() == [0, 250, 500, 750]
    assert tscd.solver_grid(50).tolist() == list(range(0, 1000, 20))


@pytest.mark.parametrize("n", [0, 3, 7, 33])
def test_solver_grid_refuses_steps_that_do_not_divide_T(n):
    with pytest.raises(ValueError, match="Hyper-SD: "):
        tscd.solver_grid(n)


def test_segment_lower_edge_matches_hand_values():
    t = torch.tensor([0, 124, 125, 249, 250, 499, 500, 999])
    assert tscd.segment_lower_edge(t, 8).tolist() == [0, 0, 125, 125, 250, 375, 500, 875]
    assert tscd.segment_lower_edge(t, 2).tolist() == [0, 0, 0, 0, 0, 0, 500, 500]
    assert tscd.segment_lower_edge(t, 1).tolist() == [0] * 8


@settings(max_examples=60, deadline=None)
@given(nk=grid_and_k, seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 64))
def test_t_end_is_on_the_grid_inside_the_segment_of_the_teacher_step(nk, seed, batch):
    n_steps, k = nk
    grid = tscd.solver_grid(n_steps)
    gen = torch.Generator().manual_seed(seed)
    n_idx = tscd.sample_grid_index(batch, n_steps, generator=gen)
    assert bool(((n_idx >= 1) & (n_idx <= n_steps - 1)).all())
    t_end = tscd.sample_t_end(n_idx, grid, k, generator=gen)
    t_n, t_prev = grid[n_idx], grid[n_idx - 1]
    seg = T // k
    for te, tn, tp in zip(t_end.tolist(), t_n.tolist(), t_prev.tolist(), strict=True):
        assert te in grid.tolist()
        # the teacher's step [t_prev, t_n] lies in one segment [t_b, t_b + T/k] and t_end in [t_b, t_prev]
        t_b = (tp // seg) * seg
        assert t_b <= te <= tp
        assert tn <= t_b + seg
        if tn % seg:  # off the edges, t_b is TSCD.md's floor(t_n / (T/k)) * (T/k)
            assert t_b == (tn // seg) * seg


@settings(max_examples=25, deadline=None)
@given(nk=grid_and_k, seed=st.integers(0, 2**31 - 1), data=st.data())
def test_every_allowed_t_end_is_reachable(nk, seed, data):
    n_steps, k = nk
    grid = tscd.solver_grid(n_steps)
    n = data.draw(st.integers(1, n_steps - 1))
    t_prev = int(grid[n - 1])
    t_b = (t_prev // (T // k)) * (T // k)
    allowed = {int(g) for g in grid if t_b <= int(g) <= t_prev}
    draws = 40 * len(allowed) + 40  # P(missing one) <= len * (1 - 1/len)^draws, negligible
    gen = torch.Generator().manual_seed(seed)
    seen = set(tscd.sample_t_end(torch.full((draws,), n), grid, k, generator=gen).tolist())
    assert seen == allowed


def test_t_end_for_k1_reaches_zero_and_for_k8_stays_in_the_segment():
    grid = tscd.solver_grid(40)  # cell 25
    gen = torch.Generator().manual_seed(0)
    n = torch.full((2000,), 30)  # t_n = 750, t_prev = 725
    assert set(tscd.sample_t_end(n, grid, 1, generator=gen).tolist()) == set(range(0, 726, 25))
    # t_n = 750 is a k=8 edge (multiple of 125): its step belongs to [625, 750]
    assert set(tscd.sample_t_end(n, grid, 8, generator=gen).tolist()) == {625, 650, 675, 700, 725}


def test_sample_t_end_refuses_a_grid_that_does_not_hold_the_segment_edges():
    grid = tscd.solver_grid(20)  # cell 50; k=8 edges at 125 are not grid points
    with pytest.raises(ValueError, match="N % k == 0"):
        tscd.sample_t_end(torch.tensor([5]), grid, 8)
    with pytest.raises(ValueError, match="grid indices"):
        tscd.sample_t_end(torch.tensor([0]), grid, 2)


# --------------------------------------------------------------------------------------------- VP algebra


def _diffusers_ddim(set_alpha_to_one: bool):
    diffusers = pytest.importorskip("diffusers")
    return diffusers.DDIMScheduler(
        num_train_timesteps=T,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=set_alpha_to_one,
        steps_offset=0,
    )


@pytest.mark.parametrize("t, n_inference", [(999, 4), (749, 4), (999, 1), (980, 50), (500, 10), (260, 4), (21, 50)])
def test_ddim_step_matches_diffusers(t, n_inference):
    sched = _diffusers_ddim(set_alpha_to_one=False)
    sched.set_timesteps(n_inference)
    gen = torch.Generator().manual_seed(t)
    x = torch.randn(2, 3, 4, 4, generator=gen)
    eps = torch.randn(2, 3, 4, 4, generator=gen)
    ref = sched.step(eps, t, x, eta=0.0).prev_sample
    t_next = t - T // n_inference
    # diffusers steps to ᾱ_0 (set_alpha_to_one=False) when t_next < 0
    ours = tscd.ddim_step(x, eps, torch.full((2,), t), torch.full((2,), max(t_next, 0)), ACP)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_ddim_step_to_minus_one_is_diffusers_final_alpha_one_and_predict_x0():
    sched = _diffusers_ddim(set_alpha_to_one=True)
    sched.set_timesteps(4)
    gen = torch.Generator().manual_seed(1)
    x, eps = torch.randn(3, 2, 5, 5, generator=gen), torch.randn(3, 2, 5, 5, generator=gen)
    ref = sched.step(eps, 249, x, eta=0.0)
    ours = tscd.ddim_step(x, eps, 249, -1, ACP)
    torch.testing.assert_close(ours, ref.prev_sample, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tscd.predict_x0(x, eps, 249, ACP), ref.pred_original_sample, rtol=1e-5, atol=1e-5)


def test_add_noise_matches_diffusers_and_inverts_predict_x0():
    sched = _diffusers_ddim(set_alpha_to_one=False)
    gen = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(4, 3, 6, 6, generator=gen), torch.randn(4, 3, 6, 6, generator=gen)
    t = torch.tensor([0, 1, 500, 999])
    x_t = tscd.add_noise(x0, eps, t, ACP)
    torch.testing.assert_close(x_t, sched.add_noise(x0, eps, t), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tscd.predict_x0(x_t, eps, t, ACP), x0, rtol=1e-4, atol=1e-4)
    # a hand value: sqrt(ᾱ)·1 + sqrt(1-ᾱ)·0 at t = 500
    one = tscd.add_noise(torch.ones(1, 1), torch.zeros(1, 1), 500, ACP)
    assert one.item() == pytest.approx(math.sqrt(float(ACP[500])), rel=1e-6)


def test_ddim_step_is_exact_identity_when_t_next_equals_t_and_exact_on_the_true_eps():
    gen = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(4, 2, 3, 3, generator=gen), torch.randn(4, 2, 3, 3, generator=gen)
    t = torch.tensor([999, 600, 250, 20])
    x_t = tscd.add_noise(x0, eps, t, ACP)
    assert torch.equal(tscd.ddim_step(x_t, eps, t, t, ACP), x_t)
    # with the true eps, DDIM lands exactly on add_noise(x0, eps, t_next)
    t_next = torch.tensor([500, 0, 125, 19])
    torch.testing.assert_close(tscd.ddim_step(x_t, eps, t, t_next, ACP), tscd.add_noise(x0, eps, t_next, ACP))


def test_cfg_combine_scalar_and_per_element():
    u, c = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    assert torch.equal(tscd.cfg_combine(u, c, 1.0), c)
    assert torch.equal(tscd.cfg_combine(u, c, 0.0), u)
    out = tscd.cfg_combine(u + 2.0, c + 2.0, torch.tensor([3.0, 7.5]))
    assert out[0].unique().tolist() == [2.0 + 3.0] and out[1].unique().tolist() == [2.0 + 7.5]


def test_sample_omega_range():
    om = tscd.sample_omega(1000, 3.0, 6.0, generator=torch.Generator().manual_seed(0))
    assert om.shape == (1000,) and float(om.min()) >= 3.0 and float(om.max()) <= 6.0
    assert float(om.max()) - float(om.min()) > 2.5
    with pytest.raises(ValueError, match="Hyper-SD: "):
        tscd.sample_omega(2, 6.0, 3.0)


def test_pseudo_huber_formula_and_limits():
    pred, target = torch.tensor([0.0, 1.0, -3.0]), torch.tensor([0.0, 0.0, 1.0])
    c = 0.5
    expected = sum(math.sqrt(d * d + c * c) - c for d in (0.0, 1.0, 4.0)) / 3
    assert tscd.pseudo_huber(pred, target, c=c).item() == pytest.approx(expected, rel=1e-6)
    # tiny c: ~ mean |d|
    assert tscd.pseudo_huber(pred, target, c=1e-6).item() == pytest.approx(5.0 / 3, rel=1e-5)


def test_stage_weights_defaults_and_overrides():
    assert [tscd.stage_weights(k) for k in (8, 4, 2, 1)] == [(1, 0), (1, 0.05), (0.75, 0.1), (0.5, 0.2)]
    assert tscd.stage_weights(2, {2: (1.0, 0.0)}) == (1.0, 0.0)
    with pytest.raises(ValueError, match="k=3"):
        tscd.stage_weights(3)


def test_ema_update_in_place_without_grad():
    tgt = [torch.zeros(3), torch.full((2,), 10.0)]
    src = [torch.ones(3, requires_grad=True), torch.zeros(2, requires_grad=True)]
    tscd.ema_update(tgt, src, 0.9)
    torch.testing.assert_close(tgt[0], torch.full((3,), 0.1))
    torch.testing.assert_close(tgt[1], torch.full((2,), 9.0))
    assert not tgt[0].requires_grad
    with pytest.raises(ValueError, match="parameters"):
        tscd.ema_update(tgt, src[:1], 0.9)


# --------------------------------------------------------------------------------------------- one TSCD step


class LinearEps(torch.nn.Module):
    """eps = a·x + b·t/1000 + c·cond, counting calls and batch sizes."""

    def __init__(self, a: float, b: float, c: float):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(a))
        self.b = torch.nn.Parameter(torch.tensor(b))
        self.c = torch.nn.Parameter(torch.tensor(c))
        self.batches: list[int] = []

    def forward(self, x, t, cond):
        self.batches.append(x.shape[0])
        shape = (-1,) + (1,) * (x.ndim - 1)
        return self.a * x + self.b * (t.float() / 1000).reshape(shape) + self.c * cond.reshape(shape)


def _step(k=2, seed=0, batch=6, grid_steps=8):
    student, teacher, target = LinearEps(0.3, 0.1, 0.2), LinearEps(0.5, -0.2, 0.4), LinearEps(0.2, 0.3, 0.1)
    x0 = torch.randn(batch, 2, 4, 4, generator=torch.Generator().manual_seed(100 + seed))
    cond, uncond = torch.arange(batch, dtype=torch.float32) + 1, torch.zeros(batch)
    omega = torch.linspace(2.0, 6.0, batch)
    out = tscd.tscd_step_targets(
        x0, cond, uncond, k, student=student, teacher=teacher, target=target, acp=ACP,
        grid=tscd.solver_grid(grid_steps), omega=omega, generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    return out, (student, teacher, target), (x0, cond, uncond, omega)


def test_tscd_step_shapes_grads_and_call_pattern():
    out, (student, teacher, target), (x0, *_) = _step()
    assert out["pred"].shape == out["target"].shape == x0.shape
    for key in ("t_n", "t_prev", "t_end", "t_b"):
        assert out[key].shape == (x0.shape[0],) and out[key].dtype == torch.long
    assert bool((out["t_b"] <= out["t_end"]).all()) and bool((out["t_end"] <= out["t_prev"]).all())
    assert teacher.batches == [2 * x0.shape[0]]  # cond + uncond in one call
    assert len(target.batches) == 1 and len(student.batches) == 1
    assert out["pred"].requires_grad and not out["target"].requires_grad
    torch.nn.functional.mse_loss(out["pred"], out["target"]).backward()
    assert all(p.grad is not None for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is None for p in target.parameters())


def test_tscd_step_target_is_the_guided_teacher_ddim_step_when_t_end_is_t_prev():
    # grid of 8 points (cell 125) with k=8: every segment is one cell, so t_end == t_prev always
    out, (student, teacher, target), (x0, cond, uncond, omega) = _step(k=8, seed=4, batch=16)
    assert torch.equal(out["t_end"], out["t_prev"])
    x_tn, t_n, t_prev = out["x_tn"], out["t_n"], out["t_prev"]
    with torch.no_grad():
        eps = tscd.cfg_combine(teacher(x_tn, t_n, uncond), teacher(x_tn, t_n, cond), omega)
        # written out independently of ddim_step: x0_hat, then re-noise with the same eps
        a, a_prev = ACP[t_n].reshape(-1, 1, 1, 1), ACP[t_prev].reshape(-1, 1, 1, 1)
        x0_hat = (x_tn.double() - (1 - a).sqrt() * eps.double()) / a.sqrt()
        expected = (a_prev.sqrt() * x0_hat + (1 - a_prev).sqrt() * eps.double()).float()
    torch.testing.assert_close(out["target"], expected, rtol=1e-5, atol=1e-5)
    # and the student's prediction is its own DDIM jump t_n -> t_end
    with torch.no_grad():
        pred = tscd.ddim_step(x_tn, student(x_tn, t_n, cond), t_n, out["t_end"], ACP)
    torch.testing.assert_close(out["pred"].detach(), pred)


def test_tscd_step_target_uses_the_ema_model_beyond_t_prev():
    out, (student, teacher, target), (x0, cond, uncond, omega) = _step(k=1, seed=7, batch=32, grid_steps=20)
    far = out["t_end"] < out["t_prev"]
    assert bool(far.any())
    x_tn, t_n, t_prev = out["x_tn"], out["t_n"], out["t_prev"]
    with torch.no_grad():
        eps = tscd.cfg_combine(teacher(x_tn, t_n, uncond), teacher(x_tn, t_n, cond), omega)
        x_prev = tscd.ddim_step(x_tn, eps, t_n, t_prev, ACP)
        expected = tscd.ddim_step(x_prev, target(x_prev, t_prev, cond), t_prev, out["t_end"], ACP)
    torch.testing.assert_close(out["target"], expected)
    assert not torch.allclose(out["target"][far], x_prev[far])


def test_tscd_step_is_deterministic_with_a_generator_and_takes_dict_conditioning():
    a, *_ = _step(seed=11)
    b, *_ = _step(seed=11)
    assert torch.equal(a["pred"], b["pred"]) and torch.equal(a["t_end"], b["t_end"])

    def model(x, t, cond):
        return x * cond["scale"].reshape(-1, 1, 1, 1) + cond["shift"].reshape(-1, 1, 1, 1)

    x0 = torch.randn(3, 1, 2, 2)
    cond = {"scale": torch.ones(3), "shift": torch.zeros(3)}
    uncond = {"scale": torch.zeros(3), "shift": torch.ones(3)}
    out = tscd.tscd_step_targets(
        x0, cond, uncond, 4, student=model, teacher=model, target=model, acp=ACP, grid=tscd.solver_grid(40),
        omega=3.0, offset_noise=0.05, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert out["target"].shape == x0.shape and torch.isfinite(out["target"]).all()
