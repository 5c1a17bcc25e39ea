"""The Train tab's event functions without a browser: a stand-in host, the real controller and engine (tiny model)."""

import json
import sys
import time

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("peft")
from PIL import Image  # noqa: E402

from hypersd.train.controller import Hooks, TrainController  # noqa: E402
from hypersd.train.tab_form import FORM_FIELDS, TrainForm, find_checkpoint  # noqa: E402
from hypersd.webui import train_tab  # noqa: E402


class FakeHost:
    def __init__(self, root, model):
        self.root = root
        self.models = {"house.safetensors [abc]": str(model)}
        self.hook_calls = []

    def checkpoints(self):
        return dict(self.models)

    def refresh_checkpoints(self):
        pass

    def current_checkpoint(self):
        return next(iter(self.models))

    def lora_dir(self):
        return self.root / "Lora"

    def work_dir(self):
        return self.root / "work"

    def gpu_count(self):
        return 0

    def python(self):
        return sys.executable

    def tokenizer_dir(self):
        return getattr(self, "tokenizer", None)

    def refresh_loras(self):
        return "refreshed"

    def hooks(self, *, free_vram, compare):
        self.hook_calls.append((free_vram, compare))
        return Hooks()


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for i, color in enumerate([(220, 30, 30), (30, 30, 220), (30, 200, 30)]):
        Image.new("RGB", (64, 64), color).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(f"a {['red', 'blue', 'green'][i]} square")
    return folder


def _values(**changes):
    base = {"checkpoint": "house.safetensors [abc]", "stages": "2,1", "resolution": "64", "batch_size": "2",
            "rank": "4", "steps_per_stage": "2", "sample_prompts": "a red square"}  # fmt: skip
    form = TrainForm(**{**base, **changes})
    return [getattr(form, name) for name in FORM_FIELDS]


def _poll_until(controller, predicate, timeout=240, host=None):
    """Poll like the UI timer; return what the components show (the last value sent to each)."""
    seen = None
    shown = [None] * 8
    deadline = time.time() + timeout
    while time.time() < deadline:
        done = predicate(controller.status())  # read first: the tick below then sees the finished state
        out = train_tab.poll(controller, seen, host)
        seen = out[-1]
        shown = [old if new is train_tab.NO_CHANGE else new for old, new in zip(shown, out, strict=True)]
        if done:
            return shown
        time.sleep(0.2)
    raise AssertionError(controller.status().console[-3000:])


def test_form_problems_are_listed_together(tmp_path, tiny):
    host = FakeHost(tmp_path, tiny)
    message, thumbs = train_tab.on_check(
        host, TrainController(), _values(checkpoint="gone [x]", out="a/b", rank="x", data="")
    )
    assert thumbs == []
    for words in ("Checkpoint: 'gone [x]' is not in WebUI's list", "Output name", "LoRA rank"):
        assert words in message, words


def test_a_checkpoint_title_from_before_webui_hashed_the_file_is_the_same_checkpoint(tmp_path, tiny, data):
    """WebUI titles a checkpoint "house.safetensors" until it hashes it, then "house.safetensors [abc]"; the tab's
    dropdown, drawn before that, still says the old title and must not be refused."""
    host = FakeHost(tmp_path, tiny)
    message, _ = train_tab.on_check(host, TrainController(), _values(checkpoint="house.safetensors", data=str(data)))
    assert "✅ Ready to train." in message, message
    assert find_checkpoint(host.checkpoints(), "house.safetensors [def]") == str(tiny)
    assert find_checkpoint(host.checkpoints(), "house") is None
    two = {"a/house.safetensors [1]": "/m/a.safetensors", "house.safetensors [2]": "/m/b.safetensors"}
    assert find_checkpoint(two, "house.safetensors") == "/m/b.safetensors"
    assert find_checkpoint({"x [1]": "/m/1", "x [2]": "/m/2"}, "x") is None  # two files: not a guess


def test_check_reports_data_model_and_readiness(tmp_path, tiny, data):
    host = FakeHost(tmp_path, tiny)
    message, thumbs = train_tab.on_check(host, TrainController(), _values(data=str(data)))
    assert "✅ Ready to train." in message, message
    assert "3 images" in message and "3 of 3 (100%)" in message and "Disk needed" in message
    assert len(thumbs) == 3

    message, _ = train_tab.on_check(host, TrainController(), _values(data=str(data), resolution="1024"))
    assert "Cannot start" in message and "SDXL-sized" in message
    message, _ = train_tab.on_check(host, TrainController(), _values(data=str(tmp_path / "none")))
    assert "not found" in message and "Ready" not in message
    message, _ = train_tab.on_check(host, TrainController(), _values(data=str(data), gpus="2"))
    assert "2 GPUs asked for, but this machine has 0" in message


def test_check_loads_the_reward_model_and_says_so(tmp_path, tiny, data):
    from hypersd.demo.classifier import CLASSIFIER_FILE
    from hypersd.demo.teacher import TEACHER_DIR

    host = FakeHost(tmp_path, tiny)
    good = f"demo:{TEACHER_DIR / CLASSIFIER_FILE}"
    message, _ = train_tab.on_check(host, TrainController(), _values(data=str(data), feedback=True, reward=good))
    assert f"✔️ The reward model {good} loads and scores an image." in message and "✅ Ready to train." in message
    missing = f"demo:{tmp_path / 'nothing.safetensors'}"
    message, _ = train_tab.on_check(host, TrainController(), _values(data=str(data), feedback=True, reward=missing))
    assert "Cannot start" in message and "nothing.safetensors" in message and "loads and scores" not in message


def test_start_progress_samples_and_the_finished_lora(tmp_path, tiny, data):
    host = FakeHost(tmp_path, tiny)
    controller = TrainController(poll_seconds=0.1)
    message = train_tab.on_start(host, controller, _values(data=str(data), free_vram=False, normal_steps=12))
    assert message.startswith("Started **house-hyper**"), message
    assert host.hook_calls == [(False, {"normal_steps": 12, "normal_cfg": 7.0})]
    busy = train_tab.on_start(host, controller, _values(data=str(data), out="second"))
    assert "already running" in busy or "already exists" in busy

    html, log, plot, samples, comparison, resume, report, seen = _poll_until(
        controller, lambda s: s.state == "finished", host=host
    )
    assert resume == {"__type__": "update", "choices": [], "value": None}  # a finished run is not resumable
    status = controller.status()
    assert status.result == "done", status.console[-3000:]
    assert "✅" in html and "Done after 4 steps" in html and 'style="width:100.0%"' in html
    assert isinstance(plot, Image.Image) and plot.size == (640, 260)
    assert [caption for _, caption in samples] == ["stage k=2", "stage k=1"]
    assert comparison is None  # the stand-in host makes no grid
    assert "<iframe" in report and "Quality report" in report  # the engine's report, shown when the run ends
    assert "hypersd distill" in log
    assert (tmp_path / "Lora" / "house-hyper.safetensors").is_file()
    # nothing changed since the last tick: the heavy components are left alone
    again = train_tab.poll(controller, seen, host)
    assert again[2] == again[3] == again[5] == again[6] == train_tab.NO_CHANGE
    # the same name again is refused until Overwrite is ticked
    message = train_tab.on_start(host, controller, _values(data=str(data)))
    assert "already exists" in message and "Overwrite" in message


def test_cancel_and_resume_from_the_tab(tmp_path, tiny, data):
    host = FakeHost(tmp_path, tiny)
    controller = TrainController(poll_seconds=0.1)
    train_tab.on_start(host, controller, _values(data=str(data), steps_per_stage="100000"))
    _poll_until(controller, lambda s: s.progress is not None and s.progress.step >= 1)
    assert "saving a checkpoint" in train_tab.on_cancel(controller)
    shown = _poll_until(controller, lambda s: s.state == "finished", host=host)
    assert "⏸" in shown[0] and "Press Resume" in shown[0]
    choices = train_tab.resumable_choices(host)
    assert len(choices) == 1 and choices[0].startswith("house-hyper (step ")
    assert shown[5] == {"__type__": "update", "choices": choices, "value": choices[0]}  # offered and preselected
    stopped = controller.status().progress.step

    message = train_tab.on_resume(host, controller, choices[0], _values())
    assert message.startswith("Resuming **house-hyper**"), message
    _poll_until(controller, lambda s: s.progress is not None and s.progress.step > stopped)
    train_tab.on_cancel(controller)
    _poll_until(controller, lambda s: s.state == "finished")
    events = [json.loads(line) for line in controller.job.files.log.read_text().splitlines()]
    assert [e["global_step"] for e in events if e["event"] == "resume"] == [stopped]
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps == list(range(1, len(steps) + 1))
    assert "pick a stopped run" in train_tab.on_resume(host, controller, "nothing like this", _values())


def test_the_status_says_a_finished_jobs_result_once():
    from hypersd.train.controller import JobStatus
    from hypersd.train.progress import TrainProgress, format_progress

    progress = TrainProgress(phase="done", step=12, total_steps=12, final="/m/Lora/house.safetensors")
    done = format_progress(progress)
    page = train_tab.status_html(
        JobStatus("finished", "house", "done", done, 0, progress, notes=["Lora list refreshed"])
    )
    assert page.count(done) == 1 and "✅" in page and "Lora list refreshed" in page
    running = TrainProgress(phase="training", step=3, total_steps=12)
    page = train_tab.status_html(JobStatus("running", "house", None, "Training…", None, running))
    assert "Training…" in page and format_progress(running) in page and "⏳" in page
