"""The sampler comparison: call counts and the Euler loop against diffusers."""

import torch
from diffusers import EulerDiscreteScheduler
from tiny_models import TinyEpsModel

from hypersd import compare, schedules
from hypersd.denoiser import EpsDenoiser


def test_call_counts_match_the_recipes():
    rows = compare.run_recipes(size=8, repeats=1)
    by_name = {r.recipe.split(",")[0]: r for r in rows}
    assert (by_name["TCD"].calls, by_name["TCD"].rows) == (4, 4)  # CFG 1: one row per step
    assert (by_name["DPM++ SDE Karras"].calls, by_name["DPM++ SDE Karras"].rows) == (7, 14)  # 2/step, last 1
    assert (by_name["Euler"].calls, by_name["Euler"].rows) == (25, 50)
    assert "vs TCD" in compare.format_table(rows)


def test_euler_trailing_equals_diffusers():
    sd = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
    ref = EulerDiscreteScheduler(**sd, timestep_spacing="trailing")
    ref.alphas_cumprod = ref.alphas_cumprod.double()
    ref.set_timesteps(6)
    model = TinyEpsModel()
    torch.manual_seed(0)
    z = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    acp = schedules.alphas_cumprod()
    den = EpsDenoiser(model, acp)
    sigmas = schedules.timesteps_to_sigmas(ref.timesteps.tolist(), den.sigmas)
    ours = compare.sample_euler(den, z * sigmas[0], sigmas)
    # diffusers' Euler works in the same VE space but scales the model input itself
    x = z * ref.init_noise_sigma
    for t in ref.timesteps:
        eps = model(ref.scale_model_input(x, t), t)
        x = ref.step(eps, t, x).prev_sample
    torch.testing.assert_close(ours, x, rtol=0, atol=1e-4)


def test_karras_sigmas_endpoints():
    s = compare.karras_sigmas(4, 0.03, 14.6)
    assert len(s) == 5 and s[-1] == 0
    torch.testing.assert_close(s[[0, 3]], torch.tensor([14.6, 0.03]))
