"""Registration of the TCD sampler and our schedules, against a stand-in of WebUI's registries."""

from types import SimpleNamespace

import pytest
import torch
from webui_standin import make_host

from hypersd import schedules
from hypersd.webui.host import HostChanges
from hypersd.webui.samplers import (
    GAMMA_DEFAULT,
    GAMMA_INFOTEXT,
    GAMMA_OPTION,
    SCHEDULES,
    register_all,
    webui_sample_tcd,
)


def names(host):
    return [s.name for s in host.sd_samplers.all_samplers]


def schedule_labels(host):
    return [s.label for s in host.sd_schedulers.schedulers]


def test_registers_sampler_schedules_and_option():
    host = make_host()
    before = names(host)
    assert host.sd_samplers.get_sampler_and_scheduler("TCD", "TCD") == ("DPM++ 2M", "Automatic")  # cached miss
    register_all(host, HostChanges())
    assert names(host) == before + ["TCD"]  # appended: samplers[0] stays WebUI's default
    assert host.sd_samplers.samplers[0].name == "DPM++ 2M"
    assert host.sd_samplers.samplers_map["tcd"] == "TCD" and host.sd_samplers.samplers_map["k_tcd"] == "TCD"
    assert schedule_labels(host)[-3:] == ["Trailing", "TCD", "Hyper 1-step (t=800)"]
    for key in ("trailing", "Trailing", "tcd", "TCD", "hyper_1step", "Hyper 1-step (t=800)"):
        assert key in host.sd_schedulers.schedulers_map
    # the cache was cleared, so names resolve now (TCD's own default schedule reads as Automatic)
    assert host.sd_samplers.get_sampler_and_scheduler("TCD", "TCD") == ("TCD", "Automatic")
    assert host.sd_samplers.get_sampler_and_scheduler("Euler", "Trailing") == ("Euler", "Trailing")
    assert host.sd_samplers.get_sampler_and_scheduler("Euler", "Hyper 1-step (t=800)")[1] == "Hyper 1-step (t=800)"
    assert host.shared.opts.data[GAMMA_OPTION] == GAMMA_DEFAULT
    assert host.shared.opts.data_labels[GAMMA_OPTION].infotext == GAMMA_INFOTEXT


def test_registration_is_idempotent_and_reversible():
    host = make_host()
    changes = HostChanges()
    register_all(host, changes)
    snapshot = (names(host), schedule_labels(host), dict(host.sd_schedulers.schedulers_map))
    assert register_all(host, changes) == []  # applying again changes nothing
    assert (names(host), schedule_labels(host)) == snapshot[:2]

    changes.undo_all()
    fresh = make_host()
    assert names(host) == names(fresh)
    assert schedule_labels(host) == schedule_labels(fresh)
    assert set(host.sd_schedulers.schedulers_map) == set(fresh.sd_schedulers.schedulers_map)
    assert "TCD" not in host.sd_samplers.all_samplers_map and "tcd" not in host.sd_samplers.samplers_map
    assert GAMMA_OPTION not in host.shared.opts.data_labels
    assert host.sd_samplers.get_sampler_and_scheduler("TCD", None)[0] == "DPM++ 2M"  # cache cleared on undo

    # a script reload: WebUI runs our unload callback, then imports the glue again
    register_all(host, changes)
    assert names(host).count("TCD") == 1 and schedule_labels(host).count("Trailing") == 1


def test_stale_entries_from_a_lost_load_are_replaced_not_duplicated():
    host = make_host()
    register_all(host, HostChanges())  # this load's unload callback never runs
    register_all(host, HostChanges())  # a new registry (module re-imported) registers again
    assert names(host).count("TCD") == 1
    assert schedule_labels(host).count("TCD") == 1


def test_schedule_names_never_equal_a_sampler_suffix():
    host = make_host()
    from webui_standin import SamplerData

    host.sd_samplers.all_samplers.append(SamplerData("Foo Trailing", None, [], {}))
    with pytest.raises(RuntimeError, match="last word"):
        register_all(host, HostChanges())


def test_real_webui_sampler_names_do_not_clash_with_ours():
    # The last words of WebUI v1.10.1's sampler names (modules/sd_samplers_*.py).
    webui_last_words = {"2M", "SDE", "a", "Euler", "LMS", "Heun", "DPM2", "fast", "adaptive", "Restart"}
    webui_last_words |= {"DDIM", "CFG++", "PLMS", "UniPC", "LCM", "Heun"}
    ours = {w for s in SCHEDULES for w in (s.name, s.label, *s.aliases)}
    assert not (ours & webui_last_words)


class TableModel:
    """What WebUI passes as inner_model: a k-diffusion wrapper with a sigma table."""

    def __init__(self):
        self.sigmas = schedules.sigma_table(schedules.alphas_cumprod()).float()


@pytest.mark.parametrize("n", [1, 2, 4, 8, 12])
def test_schedule_functions_follow_webuis_contract(n):
    host = make_host()
    register_all(host, HostChanges())
    inner = TableModel()
    table = inner.sigmas
    expected = {
        "Trailing": schedules.trailing_timesteps(n),
        "TCD": schedules.tcd_timesteps(n),
        "Hyper 1-step (t=800)": schedules.hyper_1step_timesteps(n),
    }
    for label, timesteps in expected.items():
        sched = host.sd_schedulers.schedulers_map[label]
        assert sched.need_inner_model
        out = sched.function(n=n, sigma_min=0.03, sigma_max=14.6, inner_model=inner, device=torch.device("cpu"))
        assert len(out) == n + 1 and out[-1] == 0
        assert out[:-1].tolist() == [table[t].item() for t in timesteps]


class LCMGridModel:
    """WebUI's LCM sampler's inner_model (sd_samplers_lcm.LCMCompVisDenoiser): its sigma table holds only LCM's
    50-point grid t = 19, 39, …, 999; the model (with its 1000 ᾱ) is its ``inner_model``."""

    def __init__(self):
        acp = schedules.alphas_cumprod().float()
        self.inner_model = SimpleNamespace(alphas_cumprod=acp)
        self.sigmas = ((1 - acp[19::20]) / acp[19::20]) ** 0.5  # the denoiser's own formula, on its grid


@pytest.mark.parametrize("n", [1, 4])
def test_schedules_index_by_timestep_also_under_webuis_lcm_sampler(n):
    """Found on an SDXL model: the 1-step UNet preset (LCM sampler, t=800) failed with "timesteps [800] fall
    outside the model's table of 50"."""
    host = make_host()
    register_all(host, HostChanges())
    lcm = LCMGridModel()
    acp = lcm.inner_model.alphas_cumprod
    compvis = SimpleNamespace(sigmas=((1 - acp) / acp) ** 0.5)  # k-diffusion's DiscreteSchedule, same float32 ᾱ
    assert len(lcm.sigmas) == 50 and torch.equal(lcm.sigmas, compvis.sigmas[19::20])
    for label in ("Trailing", "TCD", "Hyper 1-step (t=800)"):
        sched = host.sd_schedulers.schedulers_map[label]
        got = sched.function(n=n, inner_model=lcm, device=torch.device("cpu"))
        want = sched.function(n=n, inner_model=compvis, device=torch.device("cpu"))
        assert torch.equal(got, want), label
    hyper = host.sd_schedulers.schedulers_map["Hyper 1-step (t=800)"].function(n=1, inner_model=lcm)
    assert hyper.tolist() == [compvis.sigmas[800].item(), 0.0]


def test_gamma_flows_through_webuis_eta_plumbing():
    host = make_host()
    register_all(host, HostChanges())
    sampler = host.sd_samplers.all_samplers_map["TCD"].constructor("model")
    assert sampler.func is webui_sample_tcd
    opts = host.shared.opts

    p = SimpleNamespace(eta=None, extra_generation_params={})
    assert sampler.initialize(p, opts) == {"eta": GAMMA_DEFAULT}  # from the option's default
    assert GAMMA_INFOTEXT not in p.extra_generation_params  # default: not written

    p = SimpleNamespace(eta=0.8, extra_generation_params={})  # p.eta: API "eta", X/Y/Z "Eta"
    assert sampler.initialize(p, opts) == {"eta": 0.8}
    assert p.extra_generation_params == {GAMMA_INFOTEXT: 0.8}

    opts.data[GAMMA_OPTION] = 0.0  # the UI setting (also what a pasted "TCD gamma" overrides)
    p = SimpleNamespace(eta=None, extra_generation_params={})
    assert sampler.initialize(p, opts) == {"eta": 0.0}
    assert p.extra_generation_params == {GAMMA_INFOTEXT: 0.0}
