"""The quality report's reference images: what its Fréchet distance compares a LoRA's samples with."""

from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hypersd.distill import report  # noqa: E402
from hypersd.report_page import frechet_distance  # noqa: E402


class _FlatScorer:
    """Features = the pixels themselves; every image matches its prompt."""

    def features(self, images):
        return images.flatten(1)

    def fidelity(self, images, prompts):
        return torch.ones(len(images))

    def reward(self, images, prompts):
        return torch.zeros(len(images))


def _teacher_image(noise, steps):
    """A stand-in teacher: a fixed map from a noise to its image (what a deterministic sampler is)."""
    return 0.5 * noise + steps / 100.0


def _evaluator(count: int = 6):
    ev = object.__new__(report.Evaluator)
    gen = torch.Generator().manual_seed(0)
    ev.noise = torch.randn((count, 4, 2, 2), generator=gen)
    ev.reference_noise = torch.randn((count, 4, 2, 2), generator=gen)
    ev.prompts, ev.scorer, ev.teacher_cfg = ["a red circle"] * count, _FlatScorer(), 3.0
    ev.state = SimpleNamespace(teacher=object(), cfg=SimpleNamespace(report_steps=(1, 4)))
    ev.decode = lambda latents: latents.clone()

    def sample(view, setting, steps, n, seed, noise=None):
        return _teacher_image((ev.noise if noise is None else noise)[:n], steps)

    ev.sample = sample
    return ev


def _flat(x):
    return x.flatten(1).numpy()


def test_the_frechet_reference_is_the_teachers_25_step_images_from_other_noises():
    """A sampler that reproduces the teacher's images from the same noises gets no head start: the teacher's own
    25-step images score the distance between two sample sets (the floor), not 0, and every LoRA is compared with
    the images of the other noises."""
    ev = _evaluator()
    ref, line = report.measure_teacher(ev)
    steps = report.REFERENCE_STEPS
    assert np.allclose(ref["features"], _flat(_teacher_image(ev.reference_noise, steps)))
    assert torch.equal(ref["latents"], _teacher_image(ev.noise, steps))  # errors stay same-noise
    floor = frechet_distance(_flat(_teacher_image(ev.noise, steps)), _flat(_teacher_image(ev.reference_noise, steps)))
    assert line[steps]["pixel_mse"] == 0.0 and floor > 0.1
    assert line[steps]["frechet"] == pytest.approx(floor, rel=1e-9)
    four = frechet_distance(_flat(_teacher_image(ev.noise, 4)), _flat(_teacher_image(ev.reference_noise, steps)))
    assert line[4]["frechet"] == pytest.approx(four, rel=1e-9)


def test_without_a_scorer_the_teacher_is_sampled_once_and_no_distance_is_reported():
    ev = _evaluator()
    ev.scorer, calls = None, []
    inner = ev.sample
    ev.sample = lambda *a, **k: calls.append(k.get("noise")) or inner(*a, **k)
    ref, line = report.measure_teacher(ev)
    assert "features" not in ref and "frechet" not in line[report.REFERENCE_STEPS]
    assert all(noise is None for noise in calls) and len(calls) == 1 + 2  # the reference, then 1 and 4 steps


def _steps(**numbers: dict) -> dict[int, dict]:
    return {int(n.lstrip("s")): r for n, r in numbers.items()}


def test_recommended_steps_takes_the_fewest_within_five_percent_of_the_best_fidelity():
    by_steps = _steps(s1={"fidelity": 20.0}, s2={"fidelity": 28.6}, s4={"fidelity": 30.0}, s8={"fidelity": 29.0})
    # 0.95 * 30 = 28.5: 2 steps are within, 1 step is not
    assert report.recommended_steps("unified", None, by_steps, scored=True) == 2


def test_recommended_steps_counts_the_best_as_within_when_the_scores_are_negative():
    # an untrained CLIP scores below zero: 0.95 * top is then above top, and nothing was within (a crash after
    # the whole training); the margin is of the best value's size
    by_steps = _steps(s1={"fidelity": -0.20}, s2={"fidelity": -0.104}, s4={"fidelity": -0.10}, s8={"fidelity": -0.3})
    assert report.recommended_steps("unified", None, by_steps, scored=True) == 2
    assert report.recommended_steps("unified", None, {4: {"fidelity": -1.0}}, scored=True) == 4


def test_recommended_steps_skips_non_finite_numbers_and_falls_back_to_the_error():
    nan = float("nan")
    by_steps = _steps(s1={"fidelity": nan, "pixel_mse": 0.5}, s2={"fidelity": 10.0, "pixel_mse": 0.2})
    assert report.recommended_steps("unified", None, by_steps, scored=True) == 2
    unscored = _steps(s1={"pixel_mse": 0.30}, s2={"pixel_mse": 0.21}, s4={"pixel_mse": 0.20})
    assert report.recommended_steps("unified", None, unscored, scored=False) == 2  # 0.21 <= 1.1 * 0.20
    broken = _steps(s1={"pixel_mse": nan}, s4={"pixel_mse": nan})
    assert report.recommended_steps("unified", None, broken, scored=False) == 4


def test_recommended_steps_of_a_per_step_lora_is_its_own_step_count():
    by_steps = _steps(s1={"pixel_mse": 0.1}, s4={"pixel_mse": 0.9})
    assert report.recommended_steps("per-step", 4, by_steps, scored=False) == 4
