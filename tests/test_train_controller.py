"""The Train tab's job controller: start, progress, cancel, resume, failures — real subprocesses, tiny model, CPU."""

import json
import pathlib
import sys
import threading
import time

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("peft")
pytest.importorskip("accelerate")
from PIL import Image  # noqa: E402
from safetensors import safe_open  # noqa: E402

from hypersd.train import controller as ctl  # noqa: E402
from hypersd.train.controller import (  # noqa: E402
    Hooks,
    JobError,
    TrainController,
    TrainRequest,
    build_command,
    find_resumable,
)
from hypersd.train.job_launch import parse_gpus  # noqa: E402

TINY = {"stages": [2, 1], "resolution": 64, "batch_size": 2, "rank": 4, "synth_steps": 2, "checkpoint_every": 1000,
        "sample_prompts": ["a red square"]}  # fmt: skip


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # 2 shared cores: OpenMP spinning makes tiny models crawl
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for i, color in enumerate([(220, 30, 30), (30, 30, 220), (30, 200, 30)]):
        Image.new("RGB", (64, 64), color).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(f"a {['red', 'blue', 'green'][i]} square")
    return folder


def _request(tmp_path, tiny, images, out="house", **settings):
    return TrainRequest(
        model=str(tiny), data=str(images), out=out, output_dir=str(tmp_path / "Lora"),
        work_dir=str(tmp_path / "work"), preset="quick", settings={**TINY, **settings},
    )  # fmt: skip


class Recorder(Hooks):
    def __init__(self, gate=None):
        self.calls = []
        self.gate = gate

    def before(self, job):
        self.calls.append(("before", job.state))
        if self.gate is not None:
            self.gate.wait(30)
        return "model moved out"

    def after(self, job):
        self.calls.append(("after", job.result))
        return "model back"


def _wait_for(predicate, timeout=180.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


# ------------------------------------------------------------------------------------------------ pure parts


@pytest.mark.parametrize(
    ("state", "phase", "shown"),
    [("running", "starting", "Starting the training process…"), ("running", "caching", "Starting the training process…"),
     ("running", "training", "Training…"), ("running", "preparing", "Training…"), ("running", "reporting", "Training…"),
     ("stopping", "training", "Starting the training process…")],
)  # fmt: skip
def test_the_launch_message_gives_way_once_the_engine_is_past_loading(state, phase, shown):
    assert ctl.shown_message(state, phase, "Starting the training process…") == shown
    assert ctl.shown_message("running", phase, "Stopping after this step…") == "Stopping after this step…"


def test_parse_gpus():
    assert parse_gpus("") == (1, None)
    assert parse_gpus("1") == (1, None)
    assert parse_gpus("2", available=2) == (2, None)
    assert parse_gpus(" 0, 2 ", available=4) == (2, "0,2")
    for bad, available, words in [("3", 2, "has 2"), ("0,3", 2, "device 3"), ("x", None, "count"),
                                  ("1,1", None, "twice"), ("-1", None, "at least 1")]:  # fmt: skip
        with pytest.raises(JobError, match=words):
            parse_gpus(bad, available)


def test_build_command_single_process_and_accelerate_launch(tmp_path):
    request = TrainRequest("m.safetensors", "data", "house", str(tmp_path / "L"), str(tmp_path / "w"), gpus="")
    argv, env = build_command(request, python="PY", resume=True)
    work = tmp_path / "w"
    assert argv == ["PY", "-m", "hypersd", "distill", "--config", str(work / "house.config.json"), "--stop-file",
                    str(work / "house.stop"), "--no-progress", "--preset", "quick", "--resume"]  # fmt: skip
    assert "CUDA_VISIBLE_DEVICES" not in env

    request.gpus = "1,3"
    argv, env = build_command(request, python="PY", overwrite=True, port=29999, available_gpus=4)
    assert argv[:14] == ["PY", "-m", "accelerate.commands.launch", "--num_processes", "2", "--multi_gpu",
                         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                         "--main_process_port", "29999"]  # fmt: skip
    assert argv[14:18] == ["-m", "hypersd", "distill", "--config"]
    assert argv[-1] == "--overwrite" and "--resume" not in argv
    assert env["CUDA_VISIBLE_DEVICES"] == "1,3"
    with pytest.raises(JobError):
        build_command(request, python="PY", resume=True, overwrite=True)


def test_engine_config_carries_paths_and_drops_blank_settings(tmp_path):
    request = TrainRequest("m", "d", "o", "L", "W", settings={"rank": 8, "resolution": None, "out": "ignored"})
    assert ctl.engine_config(request) == {"rank": 8, "model": "m", "data": "d", "out": "o", "output_dir": "L",
                                          "work_dir": "W"}  # fmt: skip


def test_child_environment_prepends_our_path_and_drops_launcher_variables(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.setenv("WORLD_SIZE", "4")
    env = ctl.child_environment({"X": "1"}, ["/ours"])
    assert env["PYTHONPATH"].split(ctl.os.pathsep) == ["/ours", "/elsewhere"]
    assert "WORLD_SIZE" not in env and env["X"] == "1"


# ------------------------------------------------------------------------------------------------ real jobs


def test_a_job_runs_to_the_end_with_progress_samples_and_hooks(tmp_path, tiny, images):
    hooks = Recorder()
    controller = TrainController(hooks=hooks, poll_seconds=0.1)
    job = controller.start(_request(tmp_path, tiny, images, steps_per_stage=2))
    with pytest.raises(JobError, match="already running"):
        controller.start(_request(tmp_path, tiny, images, out="other"))
    status = controller.wait(300)

    assert status.state == "finished" and status.result == "done", status.console[-3000:]
    assert status.returncode == 0
    assert hooks.calls == [("before", "waiting"), ("after", "done")]
    assert status.notes == ["model moved out", "model back"]
    final = tmp_path / "Lora" / "house.safetensors"
    assert status.final_lora == final and final.is_file()
    assert (tmp_path / "Lora" / "house-2step.safetensors").is_file()
    assert not (tmp_path / "Lora" / "house.run").exists()  # the run folder stays out of the Lora folder
    assert (tmp_path / "work" / "house.run" / "log.jsonl").is_file()
    progress = status.progress
    assert progress.phase == "done" and progress.step == progress.total_steps == 4
    assert [s for s, _, _ in progress.losses] == [1, 2, 3, 4]
    assert [p.name for p in status.sample_grids] == ["stage-k2.png", "stage-k1.png"]
    with safe_open(str(final), framework="pt") as handle:
        assert handle.metadata()["hypersd_steps_trained"] == "4"
    saved = json.loads((tmp_path / "work" / "house.job.json").read_text())
    assert saved["pid"] is None and saved["result"] == "done" and saved["request"]["out"] == "house"
    assert not (tmp_path / "work" / "house.stop").exists()
    assert find_resumable(tmp_path / "work") == []  # finished runs are not offered for resuming
    assert job.files.console.read_text().count("hypersd distill") == 1


def test_cancel_saves_a_checkpoint_and_resume_finishes_the_run(tmp_path, tiny, images):
    controller = TrainController(poll_seconds=0.1)
    request = _request(tmp_path, tiny, images, steps_per_stage=100000)
    job = controller.start(request)
    assert _wait_for(lambda: job.follower.poll().step >= 1), controller.status().console[-3000:]
    message = controller.cancel()
    assert "saving a checkpoint" in message
    status = controller.wait(120)
    assert status.result == "interrupted" and status.returncode == 130, status.console[-3000:]
    stopped_at = status.progress.step
    assert job.files.checkpoint_step() == stopped_at >= 1
    assert "Press Resume" in status.message
    assert not (tmp_path / "Lora" / "house.safetensors").exists()

    # what the tab offers after a WebUI restart: the run with its own saved request
    runs = find_resumable(tmp_path / "work")
    assert [(r.out, r.step) for r in runs] == [("house", stopped_at)]
    assert runs[0].request.settings["steps_per_stage"] == 100000
    resumed = runs[0].request
    resumed.settings["steps_per_stage"] = stopped_at + 1  # finish stage k=2 after one more step, then k=1
    controller.start(resumed, resume=True)
    status = controller.wait(300)
    assert status.result == "done", status.console[-3000:]
    steps = [e["step"] for e in map(json.loads, job.files.log.read_text().splitlines()) if e["event"] == "step"]
    assert steps == list(range(1, 2 * (stopped_at + 1) + 1))  # no step lost or repeated across the stop
    assert (tmp_path / "Lora" / "house.safetensors").is_file()


def test_cancel_while_waiting_for_the_host_starts_nothing(tmp_path, tiny, images):
    gate = threading.Event()
    hooks = Recorder(gate)
    controller = TrainController(hooks=hooks, poll_seconds=0.05)
    job = controller.start(_request(tmp_path, tiny, images))
    assert _wait_for(lambda: hooks.calls, 10)
    assert controller.status().state == "waiting"
    assert "before the job started" in controller.cancel()
    gate.set()
    status = controller.wait(30)
    assert status.result == "cancelled" and job.pid is None
    assert hooks.calls == [("before", "waiting"), ("after", "cancelled")]  # the host gets its GPU back
    assert not job.files.console.exists()


def test_a_failing_engine_reports_its_message_and_wevui_hooks_still_run(tmp_path, images):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a model")
    hooks = Recorder()
    controller = TrainController(hooks=hooks, poll_seconds=0.1)
    controller.start(_request(tmp_path, bad, images))
    status = controller.wait(120)
    assert status.result == "error" and status.returncode == 1, status.console[-2000:]
    assert "broken.safetensors" in status.message
    assert hooks.calls[-1] == ("after", "error")
    assert find_resumable(tmp_path / "work") == []


def test_a_crashing_process_is_reported_and_the_host_survives(tmp_path, tiny, images):
    fake = tmp_path / "fake" / "hypersd"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(
        "import os, signal\nprint('dying', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n"
    )
    controller = TrainController(pythonpath=[str(fake.parent)], poll_seconds=0.05)
    controller.start(_request(tmp_path, tiny, images))
    status = controller.wait(60)
    assert status.result == "crashed" and status.returncode == -9
    assert "out of memory" in status.message and "WebUI is unaffected" in status.message
    assert "dying" in status.console


def test_a_new_controller_follows_a_job_still_running_after_a_restart(tmp_path, tiny, images):
    first = TrainController(poll_seconds=0.1)
    job = first.start(_request(tmp_path, tiny, images, steps_per_stage=100000))
    assert _wait_for(lambda: job.follower.poll().step >= 1), first.status().console[-3000:]

    second = TrainController(poll_seconds=0.1)  # as after a WebUI restart: the child kept running
    adopted = second.adopt(tmp_path / "work")
    assert adopted is not None and adopted.pid == job.pid
    assert second.status().state == "running" and second.status().progress.step >= 1
    assert "saving a checkpoint" in second.cancel()  # the stop file reaches a process we did not start
    status = second.wait(120)
    assert status.result == "interrupted"
    first.wait(30)
    assert first.status().result == "interrupted"


@pytest.mark.skipif(sys.platform == "win32", reason="process groups")
def test_second_cancel_kills_at_once(tmp_path, tiny, images):
    controller = TrainController(poll_seconds=0.1)
    job = controller.start(_request(tmp_path, tiny, images, steps_per_stage=100000, checkpoint_every=100000))
    assert _wait_for(lambda: job.follower.poll().step >= 1), controller.status().console[-3000:]
    controller.cancel()
    assert "at once" in controller.cancel()
    status = controller.wait(60)
    assert status.result in ("cancelled", "interrupted")  # the checkpoint may have made it before the kill
    assert status.state == "finished"


def test_the_gpus_field_runs_the_engine_under_accelerate_launch(tmp_path, tiny, images, monkeypatch):
    """Two data-parallel processes (on the CPU: gloo, as accelerate does without GPUs), cancel and all."""
    monkeypatch.setenv("ACCELERATE_USE_CPU", "1")
    controller = TrainController(poll_seconds=0.1)
    request = _request(tmp_path, tiny, images, steps_per_stage=100000)
    request.gpus = "2"
    job = controller.start(request)
    assert _wait_for(lambda: job.follower.poll().step >= 1), controller.status().console[-3000:]
    controller.cancel()
    status = controller.wait(120)
    assert status.result == "interrupted", status.console[-3000:]
    assert status.returncode == 1  # torchrun calls the workers' exit 130 a failure; the log says otherwise
    events = [json.loads(line) for line in job.files.log.read_text().splitlines()]
    assert next(e for e in events if e["event"] == "start")["processes"] == 2
    checkpoint = job.files.run_dir / "checkpoints" / f"step-{status.progress.step:06d}"
    assert sorted(p.name for p in checkpoint.iterdir()) == ["rng-0.pt", "rng-1.pt", "state.pt"]


def test_resume_without_a_checkpoint_and_unknown_runs(tmp_path):
    assert find_resumable(tmp_path / "nothing") == []
    (tmp_path / "x.job.json").write_text("{not json")
    assert find_resumable(tmp_path) == []
    assert pathlib.Path(tmp_path / "x.job.json").exists()
