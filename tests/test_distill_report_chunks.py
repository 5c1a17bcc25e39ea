"""The quality report samples in chunks sized by the latents (a small model's images all in one call); the
numbers must not depend on the chunking, including the stochastic samplers' noise."""

import pytest

torch = pytest.importorskip("torch")

from hypersd.distill import models, report  # noqa: E402
from hypersd.schedules import alphas_cumprod  # noqa: E402


def test_rows_per_call_keeps_32_sd15_images_per_call_and_fewer_for_sdxl():
    assert models.rows_per_call(torch.zeros(1, 4, 64, 64)) == 32  # SD1.5 at 512²: as many as before
    assert models.rows_per_call(torch.zeros(1, 4, 128, 128)) == 8  # SDXL at 1024²
    assert models.rows_per_call(torch.zeros(1, 4, 8, 8)) == 2048  # the demo's 8x8 latents: one call for 128 images
    assert models.rows_per_call(torch.zeros(1, 4, 4096, 4096)) == 1


def test_step_noise_gives_each_image_the_same_noise_however_the_images_are_chunked():
    count, like = 5, torch.zeros(5, 4, 3, 3)
    whole = report.step_noise(7, like, count, 0)
    first, second = report.step_noise(7, like[:2], count, 0), report.step_noise(7, like[2:], count, 2)
    for _ in range(3):  # three sampler steps
        expected = whole(None, None)
        assert torch.equal(torch.cat([first(None, None), second(None, None)]), expected)
    assert not torch.equal(
        report.step_noise(8, like, count, 0)(None, None), report.step_noise(7, like, count, 0)(None, None)
    )


def _evaluator(count):
    ev = object.__new__(report.Evaluator)
    gen = torch.Generator().manual_seed(0)
    ev.noise = torch.randn((count, 4, 4, 4), generator=gen)
    ev.cond = {"encoder_hidden_states": torch.randn((count, 3, 8), generator=gen)}
    ev.uncond = {"encoder_hidden_states": torch.zeros((count, 3, 8))}
    ev.device, ev.acp, ev.calls, ev.rows = torch.device("cpu"), alphas_cumprod(), 0, 0
    return ev


def _view(x, t, c):  # an eps model that depends on the sample, the timestep and the conditioning
    return 0.3 * x + 1e-3 * t.float().view(-1, 1, 1, 1) + c["encoder_hidden_states"].mean(dim=(1, 2)).view(-1, 1, 1, 1)


@pytest.mark.parametrize(
    "setting",
    [report.Setting("TCD", 0.5, 1.0), report.Setting("TCD", 0.3, 2.0), report.Setting("LCM", None, 1.0),
     report.Setting("Euler", None, 1.5)],
)  # fmt: skip
def test_sampling_in_small_chunks_gives_the_same_latents_as_one_call(setting, monkeypatch):
    ev = _evaluator(6)
    whole = ev.sample(_view, setting, 4, 6, seed=3)
    assert ev.calls == 4  # 6 images of 4x4 latents: one call per step
    monkeypatch.setattr(models, "CALL_LATENT_PIXELS", 2 * 4 * 4)  # two images per call
    ev = _evaluator(6)
    chunked = ev.sample(_view, setting, 4, 6, seed=3)
    assert ev.calls == 12
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)
    if setting.gamma:
        assert not torch.allclose(ev.sample(_view, setting, 4, 6, seed=4), whole)  # the seed does reach the noise
