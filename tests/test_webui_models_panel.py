"""The Models tab's event functions and the 1-step UNet option, against stand-ins (no gradio, no WebUI)."""

import hashlib
import os
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch
from hubstub import HubStub, isolate_hub_env

from hypersd.catalog import CATALOG, CatalogEntry
from hypersd.download import DownloadManager
from hypersd.filehash import HashCache
from hypersd.webui import models_panel, unet

REPO = "test-org/test-repo"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    isolate_hub_env(monkeypatch, tmp_path / "hf-home")


def entry_for(entry_id, data, kind="lora"):
    return CatalogEntry(
        id=entry_id, repo=REPO, filename=f"{entry_id}.safetensors", local_filename=f"{entry_id}-local.safetensors",
        kind=kind, base="sdxl", size=len(data), size_exact=True, sha256=hashlib.sha256(data).hexdigest(),
        verified="A", sources="test",
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------ folders


def test_folders_follow_webui_options(tmp_path):
    opts = SimpleNamespace(lora_dir="/x/loras", lyco_dir_backcompat="/x/lyco", ckpt_dir=None)
    assert models_panel.webui_folders("lora", opts, "/m") == [Path("/x/loras"), Path("/x/lyco")]
    assert models_panel.webui_folders("checkpoint", opts, "/m") == [Path("/m/Stable-diffusion")]
    assert models_panel.webui_folders("checkpoint", SimpleNamespace(ckpt_dir="/c"), "/m") == [
        Path("/c"), Path("/m/Stable-diffusion"),
    ]  # fmt: skip
    assert models_panel.webui_folders("unet", opts, "/m") == [Path("/m/Unet")]
    bare = SimpleNamespace()  # the Lora extension disabled: its --lora-dir option does not exist
    assert models_panel.webui_folders("lora", bare, "/m") == [Path("/m/Lora"), Path("/m/LyCORIS")]
    with pytest.raises(ValueError, match="unknown model kind"):
        models_panel.webui_folders("vae", opts, "/m")


def test_refresh_lists_calls_the_lora_extension():
    calls = []
    networks = SimpleNamespace(list_available_networks=lambda: calls.append("lora"))
    sd_unet = SimpleNamespace(list_unets=lambda: calls.append("unet"))
    sd_models = SimpleNamespace(list_models=lambda: calls.append("ckpt"))
    modules = {"networks": networks, "modules.sd_unet": sd_unet, "modules.sd_models": sd_models}
    assert models_panel.refresh_lists("lora", modules) == "Lora list refreshed"
    assert models_panel.refresh_lists("unet", modules) == "SD Unet list refreshed"
    assert models_panel.refresh_lists("checkpoint", modules) == "checkpoint list refreshed"
    assert calls == ["lora", "unet", "ckpt"]
    assert models_panel.refresh_lists("lora", {}) == "the Lora extension is not loaded"


# ------------------------------------------------------------------------------------------------ events


def test_download_through_the_events_refreshes_the_lora_list_and_the_poll(tmp_path):
    data = os.urandom(150_000)
    entry = entry_for("tabtest", data)
    refreshed = []
    modules = {"networks": SimpleNamespace(list_available_networks=lambda: refreshed.append(True))}
    with HubStub() as hub:
        hub.add_file(REPO, entry.filename, data, redirect=True)
        holder = []
        manager = DownloadManager(
            lambda kind: tmp_path / kind, catalog=[entry], endpoint=hub.endpoint, console=None,
            timeout=2.0, hash_cache=HashCache(tmp_path / "h.json"),
            on_progress=lambda s: models_panel.on_job_event(s, holder[0], modules),
        )  # fmt: skip
        holder.append(manager)
        table, progress, seen = models_panel.on_refresh(manager)
        assert table[0][0] == "tabtest" and table[0][6] == "missing"
        assert models_panel.poll(manager, seen) == (models_panel.NO_CHANGE, models_panel.NO_CHANGE, seen)

        message, _table, _progress = models_panel.on_download(manager, ["tabtest"], False)
        assert "download started" in message
        assert manager.job("tabtest").wait(10)
    assert refreshed == [True]  # exactly once, after the file became visible
    assert (tmp_path / "lora" / "tabtest-local.safetensors").read_bytes() == data
    table, progress, version = models_panel.poll(manager, seen)
    assert version > seen and table[0][6] == "present" and "done" in progress
    assert models_panel.poll(manager, version)[0] is models_panel.NO_CHANGE

    message, table, _ = models_panel.on_verify(manager, ["tabtest"])
    assert "verified" in message and table[0][7] == "verified"
    assert "already present" in models_panel.on_download(manager, ["tabtest"], False)[0]
    assert models_panel.on_manual(manager, []).startswith("Hyper-SD: select")
    assert f"{REPO}/resolve/main/tabtest.safetensors" in models_panel.on_manual(manager, ["tabtest"])


def test_offline_gives_the_manual_step_and_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    entry = entry_for("off", b"o" * 10)
    manager = DownloadManager(lambda kind: tmp_path / kind, catalog=[entry], endpoint="https://hub.example",
                              console=None, hash_cache=HashCache())  # fmt: skip
    models_panel.on_download(manager, ["off"], False)
    assert manager.job("off").wait(10)
    table, progress, _ = models_panel.on_refresh(manager)
    assert table[0][6] == "missing" and "HF_HUB_OFFLINE" in table[0][7]
    assert "https://hub.example/test-org/test-repo/resolve/main/off.safetensors" in table[0][7]
    assert not (tmp_path / "lora").exists() or not any((tmp_path / "lora").iterdir())


# ------------------------------------------------------------------------------------------------ 1-step UNet


def test_the_unet_entry_is_the_presets_file():
    entry = unet.unet_entry()
    assert entry.local_filename == "Hyper-SDXL-1step-Unet.safetensors" and entry.kind == "unet"
    assert entry in CATALOG


def fake_sd_unet(original_forward):
    module = ModuleType("fake_sd_unet")

    class SdUnetOption:
        model_name = None
        label = None

    class SdUnet(torch.nn.Module):
        def activate(self):
            pass

        def deactivate(self):
            pass

    module.SdUnetOption, module.SdUnet, module.original_forward = SdUnetOption, SdUnet, original_forward
    return module


class TinyLdmUnet(torch.nn.Module):
    """Two ldm-named layers stand in for the sgm UNet; forward = the 'original forward'."""

    def __init__(self):
        super().__init__()
        self.input_blocks = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Linear(2, 2))])
        self.out = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Identity(), torch.nn.Linear(2, 2))


def test_unet_option_swaps_in_and_restores(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model_unet = TinyLdmUnet()
    original = {k: v.clone() for k, v in model_unet.state_dict().items()}
    new = {"model.diffusion_model." + k: torch.full_like(v, 0.5) for k, v in original.items()}
    path = tmp_path / "Hyper-SDXL-1step-Unet.safetensors"
    save_file(new, str(path))

    calls = []

    def original_forward(module, x, timesteps, context, **kwargs):
        calls.append(kwargs)
        return module.out[2](module.input_blocks[0][0](x))

    sd_model = SimpleNamespace(is_sdxl=True, lowvram=False, model=SimpleNamespace(diffusion_model=model_unet))
    env = SimpleNamespace(sd_model=sd_model, device="cpu", missing_message="missing!")
    option_class, _ = unet.make_classes(fake_sd_unet(original_forward), lambda: str(path), lambda: env)
    option = option_class()
    assert option.label == unet.UNET_LABEL and option.model_name is None
    hyper = option.create_unet()
    assert list(hyper.parameters()) == []  # the loaded model's UNet is not re-registered as our submodule
    hyper.activate()
    x = torch.ones(1, 2)
    out = hyper(x, torch.tensor([800]), None, y=torch.zeros(1))
    assert list(calls[0]) == ["y"]  # SDXL's y (pooled + size embedding) reaches the original forward
    # by hand: inner linear gives 0.5*1 + 0.5*1 + 0.5 = 1.5 per unit; outer gives 0.5*1.5*2 + 0.5 = 2.0
    assert torch.allclose(out, torch.full((1, 2), 2.0))
    hyper.deactivate()
    for key, value in model_unet.state_dict().items():
        assert torch.equal(value, original[key]), key


def test_unet_option_refuses_sd15_and_missing_file():
    sd_unet = fake_sd_unet(lambda *a, **k: None)
    sd15 = SimpleNamespace(sd_model=SimpleNamespace(is_sdxl=False), device="cpu", missing_message="m")
    option_class, _ = unet.make_classes(sd_unet, lambda: "/nowhere", lambda: sd15)
    hyper = option_class().create_unet()
    with pytest.raises(RuntimeError, match="needs an SDXL checkpoint"):
        hyper.activate()
    with pytest.raises(RuntimeError, match="needs an SDXL checkpoint"):  # and forward never runs the base UNet
        hyper(torch.ones(1), None, None)
    sdxl = SimpleNamespace(sd_model=SimpleNamespace(is_sdxl=True), device="cpu", missing_message="Hyper-SD: get it")
    option_class, _ = unet.make_classes(sd_unet, lambda: None, lambda: sdxl)
    with pytest.raises(RuntimeError, match="Hyper-SD: get it"):
        option_class().create_unet().activate()


def test_select_for_is_an_override_that_remembers_the_users_setting():
    opts = SimpleNamespace(data={"sd_unet": "Automatic"})
    p = SimpleNamespace(override_settings={}, override_settings_restore_afterwards=True)
    unet.select_for(p, opts)
    unet.select_for(p, opts)  # twice (e.g. hires pass): still one override, the user's value remembered
    assert p.override_settings == {"sd_unet": unet.UNET_LABEL}
    assert opts.data["sd_unet"] == "Automatic"  # WebUI sets it for the job, not us
    assert getattr(p, unet.PREVIOUS_ATTR) == "Automatic"
    unet.restore_after(p, opts)
    assert not hasattr(p, unet.PREVIOUS_ATTR) and opts.data["sd_unet"] == "Automatic"
    unet.restore_after(p, opts)  # nothing selected: nothing changes
    empty = SimpleNamespace(data={})
    unet.select_for(SimpleNamespace(), empty)
    assert empty.data == {"sd_unet": "Automatic"}  # present, so that WebUI stores and restores it


def test_lora_backups_are_undone_before_a_swap():
    layer = torch.nn.Linear(2, 2)
    layer.network_weights_backup = torch.zeros(2, 2)
    layer.network_bias_backup = None
    plain = torch.nn.Sequential(layer, torch.nn.Linear(2, 2))
    calls = []
    networks = SimpleNamespace(
        network_restore_weights_from_backup=lambda m: calls.append(("restore", m)),
        network_reset_cached_weight=lambda m: calls.append(("reset", m)),
    )
    assert unet.reset_lora_backups(plain, networks) == 1
    assert calls == [("restore", layer), ("reset", layer)]


def test_preset_problem_names_sdxl_then_the_missing_file(tmp_path):
    manager = DownloadManager(lambda kind: tmp_path / kind, endpoint="https://hub.example", console=None,
                              hash_cache=HashCache())  # fmt: skip
    sd15, sdxl = SimpleNamespace(is_sdxl=False), SimpleNamespace(is_sdxl=True)
    assert unet.preset_problem(sd15, manager) == unet.SDXL_NEEDED
    missing = unet.preset_problem(sdxl, manager)
    assert "Hyper-SDXL-1step-Unet.safetensors is missing" in missing and "'Hyper-SD Models' tab" in missing
    assert "https://hub.example/ByteDance/Hyper-SD/resolve/main/Hyper-SDXL-1step-Unet.safetensors" in missing
    assert str(tmp_path / "unet" / "Hyper-SDXL-1step-Unet.safetensors") in missing
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "Hyper-SDXL-1step-Unet.safetensors").write_bytes(b"x")
    assert unet.preset_problem(sdxl, manager) is None


def test_the_unet_label_passes_the_plans_loaded_file_check():
    from hypersd.presets import strip_extension

    wanted = strip_extension(unet.unet_entry().local_filename).lower()
    assert wanted in unet.UNET_LABEL.lower()
