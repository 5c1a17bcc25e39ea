"""TCD: the whole sampling loop against diffusers' TCDScheduler, and the sampler contract."""

import diffusers.schedulers.scheduling_tcd as diffusers_tcd
import pytest
import torch
from diffusers import TCDScheduler
from tiny_models import TinyEpsModel

from hypersd import schedules
from hypersd.denoiser import EpsDenoiser
from hypersd.sampling import find_schedule, sample_tcd, tcd_intermediate_timestep

SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
SHAPE = (2, 4, 6, 5)


def run_diffusers(model, n, gamma, z, noises, monkeypatch):
    """diffusers' TCD loop; returns its states before each step and its last x0 prediction."""
    sched = TCDScheduler(**SD)
    sched.alphas_cumprod = sched.alphas_cumprod.double()
    sched.set_timesteps(n)
    pending = list(noises)

    def fake_randn(shape, generator=None, device=None, dtype=None, layout=None):
        return pending.pop(0).to(dtype)

    monkeypatch.setattr(diffusers_tcd, "randn_tensor", fake_randn)
    x = z.clone()
    states = []
    x0 = None
    for t in sched.timesteps:
        states.append((int(t), x.clone()))
        eps = model(x, t)
        acp = sched.alphas_cumprod[t]
        x0 = (x - (1 - acp).sqrt() * eps) / acp.sqrt()
        x = sched.step(eps, t, x, eta=gamma).prev_sample
    assert pending == [], "diffusers drew fewer noises than expected"
    return sched, states, x0


def run_ours(model, acp, n, gamma, z, noises):
    den = EpsDenoiser(model, acp)
    sigmas = schedules.timesteps_to_sigmas(schedules.tcd_timesteps(n), den.sigmas)
    x = z * (1 + sigmas[0] ** 2).sqrt()  # the same state as diffusers' x_T = z, in VE form
    pending = list(noises)
    states = []

    def noise_sampler(sigma, sigma_next):
        return pending.pop(0)

    out = sample_tcd(den, x, sigmas, eta=gamma, noise_sampler=noise_sampler, callback=lambda d: states.append(d))
    assert pending == [], "our sampler drew fewer noises than diffusers"
    return sigmas, states, out


@pytest.mark.parametrize("gamma", [0.0, 0.1, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8])
def test_tcd_loop_equals_diffusers(n, gamma, monkeypatch):
    torch.manual_seed(1234 + n)
    model = TinyEpsModel()
    z = torch.randn(SHAPE, dtype=torch.float64)
    draws = (n - 1) if gamma > 0 else 0  # diffusers adds noise on every step but the last
    noises = [torch.randn(SHAPE, dtype=torch.float64) for _ in range(draws)]

    sched, ref_states, ref_x0 = run_diffusers(model, n, gamma, z, noises, monkeypatch)
    acp = sched.alphas_cumprod
    sigmas, our_states, out = run_ours(model, acp, n, gamma, z, noises)

    assert len(our_states) == n
    for (t, ref_x), ours in zip(ref_states, our_states, strict=True):
        # k-diffusion's VE state is diffusers' VP state divided by sqrt(ᾱ_t)
        torch.testing.assert_close(ours["x"], ref_x / acp[t].sqrt(), rtol=0, atol=1e-5)
    # The last step returns the x0 prediction (diffusers instead re-noises it to t=0, σ≈0.029).
    torch.testing.assert_close(out, ref_x0, rtol=0, atol=1e-5)


def test_intermediate_timestep_is_floor_of_one_minus_gamma():
    assert tcd_intermediate_timestep(759.0, 0.3) == 531.0  # floor(531.3)
    assert tcd_intermediate_timestep(259.0, 0.0) == 259.0
    assert tcd_intermediate_timestep(259.0, 1.0) == 0.0
    assert tcd_intermediate_timestep(100.0, 0.99) == 1.0  # floor(1.0000000000000009), not 0
    assert tcd_intermediate_timestep(500.5, 0.0) == 500.5  # off-grid timesteps stay continuous


# ---------------------------------------------------------------- sampler contract


def make(dtype=torch.float32):
    acp = schedules.alphas_cumprod()
    model = TinyEpsModel(dtype=dtype)
    den = EpsDenoiser(model, acp.to(dtype))
    sigmas = schedules.timesteps_to_sigmas(schedules.tcd_timesteps(4), den.sigmas)
    return den, sigmas


def seeded_noise(x, seed):
    g = torch.Generator().manual_seed(seed)
    return lambda s, sn: torch.randn(x.shape, generator=g, dtype=x.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_shape_dtype_device_kept(dtype):
    den, sigmas = make(torch.float32)
    x = torch.randn(SHAPE).to(dtype) * sigmas[0].to(dtype)
    den.eps_model = den.eps_model.to(dtype)
    out = sample_tcd(den, x, sigmas, eta=0.3, noise_sampler=seeded_noise(x, 0))
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert torch.isfinite(out.float()).all()


def test_determinism_with_fixed_noise_and_noise_matters():
    den, sigmas = make()
    x = torch.randn(SHAPE) * sigmas[0]
    a = sample_tcd(den, x, sigmas, eta=0.5, noise_sampler=seeded_noise(x, 7))
    b = sample_tcd(den, x, sigmas, eta=0.5, noise_sampler=seeded_noise(x, 7))
    c = sample_tcd(den, x, sigmas, eta=0.5, noise_sampler=seeded_noise(x, 8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_gamma_zero_is_deterministic_and_draws_no_noise():
    den, sigmas = make()
    x = torch.randn(SHAPE) * sigmas[0]

    def forbidden(*_):
        raise AssertionError("gamma 0 must not draw noise")

    a = sample_tcd(den, x, sigmas, eta=0.0, noise_sampler=forbidden)
    b = sample_tcd(den, x, sigmas, eta=0.0)
    assert torch.equal(a, b)


def test_last_step_returns_the_x0_prediction():
    den, sigmas = make()
    x = torch.randn(SHAPE) * sigmas[0]
    seen = []
    out = sample_tcd(den, x, sigmas, eta=0.3, callback=seen.append)
    assert torch.equal(out, seen[-1]["denoised"])


def test_one_model_call_and_one_callback_per_step():
    den, sigmas = make()
    x = torch.randn(SHAPE) * sigmas[0]
    seen = []
    sample_tcd(den, x, sigmas, eta=0.3, callback=seen.append)
    assert den.calls == 4
    assert [d["i"] for d in seen] == [0, 1, 2, 3]
    assert [float(d["sigma"]) for d in seen] == [float(s) for s in sigmas[:-1]]
    assert all({"x", "denoised", "sigma_hat"} <= d.keys() for d in seen)


def test_extra_args_reach_the_model():
    den, sigmas = make()
    got = []
    inner = den.eps_model

    def eps_model(x, t, cond=None):
        got.append(cond)
        return inner(x, t)

    den.eps_model = eps_model
    x = torch.randn(SHAPE) * sigmas[0]
    sample_tcd(den, x, sigmas, extra_args={"cond": "c"}, eta=0.3)
    assert got == ["c"] * 4


def test_schedule_is_found_through_the_inner_model_chain():
    den, sigmas = make()

    class CFGWrapper:  # what WebUI passes: a CFG denoiser whose inner_model is the k-diffusion wrapper
        def __init__(self, inner):
            self.inner_model = inner

        def __call__(self, x, sigma, **kw):
            return self.inner_model(x, sigma, **kw)

    wrapped = CFGWrapper(CFGWrapper(den))
    assert find_schedule(wrapped) is den
    x = torch.randn(SHAPE) * sigmas[0]
    a = sample_tcd(wrapped, x, sigmas, eta=0.3, noise_sampler=seeded_noise(x, 3))
    b = sample_tcd(den, x, sigmas, eta=0.3, noise_sampler=seeded_noise(x, 3))
    assert torch.equal(a, b)


def test_missing_schedule_is_a_clear_error():
    with pytest.raises(TypeError, match="sigma_to_t"):
        sample_tcd(lambda x, s: x, torch.zeros(1, 1, 1, 1), torch.tensor([1.0, 0.5, 0.0]), eta=0.3)


@pytest.mark.parametrize("gamma", [-0.1, 1.5])
def test_gamma_out_of_range_is_refused(gamma):
    den, sigmas = make()
    with pytest.raises(ValueError, match="gamma"):
        sample_tcd(den, torch.zeros(SHAPE), sigmas, eta=gamma)
