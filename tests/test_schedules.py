"""Schedules against diffusers' schedulers, the independent reference."""

import pytest
import torch
from diffusers import DDIMScheduler, LCMScheduler, TCDScheduler

from hypersd import schedules

SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)


@pytest.mark.parametrize("n", list(range(1, 13)) + [16, 20, 25, 30, 50])
def test_trailing_equals_diffusers_ddim_trailing(n):
    ref = DDIMScheduler(**SD, timestep_spacing="trailing")
    ref.set_timesteps(n)
    assert schedules.trailing_timesteps(n) == ref.timesteps.tolist()


def test_trailing_four_steps_is_the_hyper_sd_grid():
    assert schedules.trailing_timesteps(4) == [999, 749, 499, 249]


@pytest.mark.parametrize("original", [50, 25, 100])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 12, 25])
def test_tcd_equals_diffusers_tcd(n, original):
    ref = TCDScheduler(**SD, original_inference_steps=original)
    ref.set_timesteps(n)
    assert schedules.tcd_timesteps(n, original_steps=original) == ref.timesteps.tolist()


def test_tcd_four_steps():
    assert schedules.tcd_timesteps(4) == [999, 759, 499, 259]


def test_hyper_1step_matches_lcm_with_custom_timestep():
    ref = LCMScheduler(**SD)
    ref.set_timesteps(timesteps=[800])
    assert schedules.hyper_1step_timesteps(1) == ref.timesteps.tolist() == [800]


@pytest.mark.parametrize("n", [2, 3, 4, 8])
def test_hyper_1step_keeps_webui_contract_for_more_steps(n):
    ts = schedules.hyper_1step_timesteps(n)
    assert len(ts) == n and ts[0] == 800
    assert all(a > b for a, b in zip(ts, ts[1:], strict=False)) and ts[-1] > 0
    assert ts[1] == round(800 * (n - 1) / n)  # evenly spaced below 800


def test_alphas_cumprod_equals_diffusers_scaled_linear():
    ref = DDIMScheduler(**SD).alphas_cumprod.double()
    ours = schedules.alphas_cumprod()
    assert ours.dtype == torch.float64
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)  # diffusers computes in float32


def test_sigma_table_formula():
    acp = schedules.alphas_cumprod()
    sig = schedules.sigma_table(acp)
    # sigma² = 1/ᾱ − 1, by definition of the VE reparametrisation
    torch.testing.assert_close(sig**2, 1 / acp - 1)
    assert torch.all(sig[1:] > sig[:-1])


def test_timesteps_to_sigmas_picks_table_entries_and_ends_in_zero():
    table = schedules.sigma_table(schedules.alphas_cumprod())
    out = schedules.timesteps_to_sigmas([999, 749, 499, 249], table)
    assert out.tolist() == [table[999].item(), table[749].item(), table[499].item(), table[249].item(), 0.0]
    assert out.dtype == table.dtype


@pytest.mark.parametrize("bad", [[], [999, 999], [249, 499], [1000], [-1]])
def test_timesteps_to_sigmas_rejects_bad_lists(bad):
    table = schedules.sigma_table(schedules.alphas_cumprod())
    with pytest.raises(ValueError):
        schedules.timesteps_to_sigmas(bad, table)


@pytest.mark.parametrize("fn", [schedules.trailing_timesteps, schedules.tcd_timesteps])
def test_step_count_validation(fn):
    with pytest.raises(ValueError):
        fn(0)
    with pytest.raises(TypeError):
        fn(2.5)
    with pytest.raises(ValueError):
        schedules.tcd_timesteps(51)
