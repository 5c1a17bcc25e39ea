"""Adapter pieces that need no gradio: the CFG-1 skip, the X/Y/Z axis, model-type detection."""

from types import SimpleNamespace

import pytest

from hypersd.webui import cfg1, host_state, xyz


class FakeDenoiser:
    """Like WebUI's CFG denoiser: reads opts.skip_early_cond and notes it in the infotext."""

    def __init__(self, p, opts):
        self.p, self.opts, self.seen = p, opts, []

    def forward(self, x, fail=False):
        value = self.opts.data.get("skip_early_cond", 0.0)
        self.seen.append(value)
        if value:
            self.p.extra_generation_params["Skip Early CFG"] = value
        if fail:
            raise RuntimeError("boom")
        return x

    def __call__(self, *a, **kw):
        return self.forward(*a, **kw)


def make(cfg=1.0, prompts=("a cat",), skip=None):
    opts = SimpleNamespace(data={} if skip is None else {"skip_early_cond": skip})
    p = SimpleNamespace(cfg_scale=cfg, prompts=list(prompts), extra_generation_params={})
    p.sampler = SimpleNamespace(model_wrap_cfg=FakeDenoiser(p, opts))
    return p, opts


def test_cfg1_skips_uncond_only_during_the_call_and_leaves_no_trace():
    p, opts = make(skip=0.25)
    assert cfg1.install(p, opts)
    den = p.sampler.model_wrap_cfg
    assert den("x") == "x"
    assert den.seen == [1.0]  # the denoiser saw "skip every step"
    assert opts.data == {"skip_early_cond": 0.25}  # restored
    assert "Skip Early CFG" not in p.extra_generation_params  # no infotext that would switch CFG off on paste


def test_cfg1_restores_even_when_sampling_fails():
    p, opts = make()
    cfg1.install(p, opts)
    with pytest.raises(RuntimeError):
        p.sampler.model_wrap_cfg("x", fail=True)
    assert opts.data == {}


def test_cfg1_keeps_a_users_own_skip_early_cfg_entry():
    p, opts = make(skip=0.5)
    p.extra_generation_params["Skip Early CFG"] = 0.5
    cfg1.install(p, opts)
    p.sampler.model_wrap_cfg("x")
    assert p.sampler.model_wrap_cfg.seen == [1.0]
    assert p.extra_generation_params["Skip Early CFG"] == 0.5  # the user's own value, not ours


@pytest.mark.parametrize("cfg, prompts", [(2.0, ["a cat"]), (1.5, ["a"]), (1.0, ["a cat AND a dog"])])
def test_cfg1_not_installed_when_guidance_matters(cfg, prompts):
    p, opts = make(cfg=cfg, prompts=prompts)
    assert not cfg1.install(p, opts)
    p.sampler.model_wrap_cfg("x")
    assert p.sampler.model_wrap_cfg.seen == [0.0]


def test_cfg1_installs_once_per_sampler():
    p, opts = make()
    assert cfg1.install(p, opts)
    assert not cfg1.install(p, opts)


class AxisOption:
    def __init__(self, label, type, apply, format_value=None, confirm=None, cost=0.0, choices=None):
        self.label, self.type, self.apply, self.confirm, self.choices = label, type, apply, confirm, choices


def xyz_module():
    module = SimpleNamespace(__name__="xyz_grid.py", AxisOption=AxisOption, format_value=lambda p, o, x: x)
    module.axis_options = [AxisOption("Nothing", str, None), AxisOption("Eta", float, None)]
    return module


def test_xyz_axis_is_added_once_and_removed():
    module = xyz_module()
    data = [SimpleNamespace(module=SimpleNamespace(__name__="other.py")), SimpleNamespace(module=module)]
    xyz.register_axis(data)
    undo = xyz.register_axis(data)  # a lost unload: replaced, not doubled
    labels = [o.label for o in module.axis_options]
    assert labels.count(xyz.AXIS_LABEL) == 1 and labels[:2] == ["Nothing", "Eta"]
    option = module.axis_options[-1]
    assert "hyper-4step" in option.choices()
    p = SimpleNamespace()
    option.apply(p, "hyper-2step", [])
    assert getattr(p, xyz.XYZ_ATTR) == "hyper-2step"
    with pytest.raises(RuntimeError, match="unknown preset"):
        option.confirm(p, ["hyper-4step", "nope"])
    undo()
    assert [o.label for o in module.axis_options] == ["Nothing", "Eta"]


def test_xyz_absent_is_a_noop():
    assert xyz.register_axis([])() is None


@pytest.mark.parametrize(
    "flags, base",
    [({"is_sdxl": True}, "sdxl"), ({"is_sd1": True}, "sd15"), ({"is_sd2": True}, "sd2"), ({"is_sd3": True}, "sd3"),
     ({}, None)],
)  # fmt: skip
def test_model_base_from_webui_flags(flags, base):
    assert host_state.model_base(SimpleNamespace(**flags)) == base


def _webui_process_images(p, opts, inner):
    """WebUI v1.10.1 processing.process_images, its override-settings part (lines 819-855), transcribed."""
    stored = {k: opts.data[k] for k in p.override_settings if k in opts.data}
    try:
        for k, v in p.override_settings.items():
            opts.data[k] = v
        return inner()
    finally:
        if p.override_settings_restore_afterwards:
            for k, v in stored.items():
                opts.data[k] = v


@pytest.mark.parametrize("saved", [{"sd_unet": "Automatic"}, {"sd_unet": "my-trt-unet"}, {}])
def test_unet_selection_is_given_back_even_after_a_failed_job(saved):
    from hypersd.webui import unet

    opts = SimpleNamespace(data=dict(saved), get_default=lambda key: "Automatic")
    user_value = saved.get("sd_unet", "Automatic")
    during = []

    def failing():
        during.append(opts.data["sd_unet"])
        raise RuntimeError("out of memory")

    p = SimpleNamespace(override_settings={"CLIP_stop_at_last_layers": 2}, override_settings_restore_afterwards=True)
    opts.data["CLIP_stop_at_last_layers"] = 1
    unet.select_for(p, opts)
    assert p.override_settings == {"CLIP_stop_at_last_layers": 2, "sd_unet": unet.UNET_LABEL}  # the user's kept
    with pytest.raises(RuntimeError):
        _webui_process_images(p, opts, failing)
    assert during == [unet.UNET_LABEL]
    assert opts.data["sd_unet"] == user_value and opts.data["CLIP_stop_at_last_layers"] == 1

    # a job that keeps its overrides (API: override_settings_restore_afterwards false) still gives ours back
    keep = SimpleNamespace(override_settings={}, override_settings_restore_afterwards=False)
    unet.select_for(keep, opts)
    _webui_process_images(keep, opts, lambda: unet.restore_after(keep, opts))  # postprocess runs inside
    assert opts.data["sd_unet"] == user_value and not hasattr(keep, unet.PREVIOUS_ATTR)
