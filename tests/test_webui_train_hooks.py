"""The Train tab's WebUI hooks with stand-ins for WebUI's modules: queue lock, VRAM, Lora list, comparison grid."""

import sys
import threading
import types
from types import SimpleNamespace

import pytest

from hypersd.train.controller import Job, TrainRequest
from hypersd.webui.train_host import WebUIHooks


class Param:
    def __init__(self, device):
        self.device = SimpleNamespace(type=device)


class FakeModel:
    def __init__(self, device):
        self.device = device

    def parameters(self):
        yield Param(self.device)


@pytest.fixture
def webui(monkeypatch):
    calls = []
    lock = threading.Lock()
    model = FakeModel("cuda")

    def unload(m):
        calls.append(("unload", m.device))
        m.device = "cpu"

    def to_device(m):
        calls.append(("to_device", m.device))
        m.device = "cuda"

    sd_models = types.ModuleType("modules.sd_models")
    sd_models.model_data = SimpleNamespace(sd_model=model)
    sd_models.unload_model_weights = unload
    sd_models.send_model_to_device = to_device
    call_queue = types.ModuleType("modules.call_queue")
    call_queue.queue_lock = lock
    networks = types.ModuleType("networks")
    networks.available_networks = {}
    networks.list_available_networks = lambda: calls.append(("lora list",))
    modules = types.ModuleType("modules")
    modules.sd_models, modules.call_queue = sd_models, call_queue
    for name, module in {"modules": modules, "modules.sd_models": sd_models, "modules.call_queue": call_queue,
                         "networks": networks}.items():  # fmt: skip
        monkeypatch.setitem(sys.modules, name, module)
    grid = types.ModuleType("hypersd.webui.train_compare")

    def comparison_grid(job, *, lock_held, **options):
        calls.append(("grid", lock_held, lock.locked(), options))
        if options.get("fail"):
            raise RuntimeError("no such sampler")
        return job.files.run_dir / "comparison.png"

    grid.comparison_grid = comparison_grid
    monkeypatch.setitem(sys.modules, "hypersd.webui.train_compare", grid)
    return SimpleNamespace(calls=calls, lock=lock, model=model)


def _job(tmp_path, result):
    job = Job(TrainRequest("m", "d", "house", str(tmp_path / "L"), str(tmp_path / "w")), False, False)
    job.result = result
    return job


def test_the_model_leaves_the_gpu_and_comes_back_and_generation_waits_meanwhile(webui, tmp_path):
    hooks = WebUIHooks(free_vram=True, compare={"normal_steps": 25})
    job = _job(tmp_path, None)
    note = hooks.before(job)
    assert "moved to RAM" in note and "wait in WebUI's queue" in note
    assert webui.lock.locked() and webui.calls == [("unload", "cuda")]
    assert not webui.lock.acquire(blocking=False)  # a txt2img request would wait here

    job.result = "done"
    note = hooks.after(job)
    assert webui.calls[1:] == [("to_device", "cpu"), ("lora list",), ("grid", True, True, {"normal_steps": 25})]
    assert "back on the GPU" in note and "Comparison grid" in note
    assert job.comparison == job.files.run_dir / "comparison.png"
    assert not webui.lock.locked()


def test_a_failed_job_gets_no_grid_but_the_model_and_the_queue_back(webui, tmp_path):
    hooks = WebUIHooks(free_vram=True, compare={"normal_steps": 25})
    job = _job(tmp_path, None)
    hooks.before(job)
    job.result = "crashed"
    hooks.after(job)
    assert [c[0] for c in webui.calls] == ["unload", "to_device"]
    assert not webui.lock.locked() and webui.model.device == "cuda"


def test_a_failing_grid_is_reported_and_still_releases_everything(webui, tmp_path):
    hooks = WebUIHooks(free_vram=True, compare={"fail": True})
    job = _job(tmp_path, None)
    hooks.before(job)
    job.result = "done"
    note = hooks.after(job)
    assert "comparison grid failed: no such sampler" in note
    assert not webui.lock.locked() and webui.model.device == "cuda"


def test_a_model_already_on_the_cpu_stays_and_keeping_the_gpu_takes_no_lock(webui, tmp_path):
    webui.model.device = "cpu"
    hooks = WebUIHooks(free_vram=True, compare=None)
    job = _job(tmp_path, None)
    assert "wait in WebUI's queue" in hooks.before(job) and webui.calls == []
    job.result = "done"
    hooks.after(job)
    assert webui.calls == [("lora list",)] and not webui.lock.locked()

    keep = WebUIHooks(free_vram=False, compare={"normal_steps": 4})
    assert "generation keeps working" in keep.before(_job(tmp_path, None))
    assert not webui.lock.locked()
    done = _job(tmp_path, "done")
    keep.after(done)
    assert webui.calls[-1] == ("grid", False, False, {"normal_steps": 4})  # the grid takes the lock itself
