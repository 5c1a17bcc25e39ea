"""`python -m hypersd distill` end to end on a tiny random SD1.5-architecture model (CPU, no downloads)."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("peft")
pytest.importorskip("accelerate")
from PIL import Image  # noqa: E402
from safetensors import safe_open  # noqa: E402

from hypersd.distill import cli, lora  # noqa: E402
from hypersd.distill.tiny import build_tiny_model  # noqa: E402

SRC = str(pathlib.Path(__file__).resolve().parents[1] / "extensions_lib")
COMMON = [
    "--resolution",
    "64",
    "--batch-size",
    "2",
    "--rank",
    "4",
    "--synth-steps",
    "2",
    "--report",
    "off",
    "--no-progress",
]


pytestmark = pytest.mark.usefixtures("one_thread")


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=SRC)
    env.pop("WORLD_SIZE", None)
    return env


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for i, (color, size) in enumerate(
        [((220, 30, 30), (64, 64)), ((30, 30, 220), (96, 64)), ((30, 200, 30), (64, 80))]
    ):
        Image.new("RGB", size, color).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(f"a {['red', 'blue', 'green'][i]} square")
    return folder


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("a red cat\na blue dog\n")
    return path


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _events(log):
    return [json.loads(line) for line in pathlib.Path(log).read_text().splitlines()]


def test_cli_distills_an_image_folder_into_a_lora_that_loads_everywhere(tiny, images, tmp_path, capsys):
    from diffusers import StableDiffusionPipeline

    out = tmp_path / "out"
    args = ["--model", str(tiny), "--data", str(images), "--out", "house", "--output-dir", str(out)]
    args += ["--steps-per-stage", "2", "--adversarial", "true", *COMMON[:-1]]  # with the tqdm bar
    assert cli.main(args) == 0
    assert "done after 8 steps" in capsys.readouterr().out
    final = out / "house.safetensors"
    for k in (8, 4, 2, 1):
        assert (out / f"house-{k}step.safetensors").is_file()
        grid = Image.open(out / "house.run" / "samples" / f"stage-k{k}.png")
        assert grid.size == (4 * 64, 3 * 64)  # columns 1/2/4/8 steps, one row per caption
    events = _events(out / "house.run" / "log.jsonl")
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 9))
    assert {e["stage"] for e in steps} == {8, 4, 2, 1}
    assert all(e["samples_per_s"] > 0 and e["loss"] == e["loss"] for e in steps)
    assert any(e["loss_adv"] != 0 for e in steps if e["stage"] in (4, 2, 1))
    assert events[-1]["event"] == "done"

    with safe_open(str(final), framework="pt") as handle:
        keys = list(handle.keys())
        meta = handle.metadata()
    assert meta["hypersd_stages"] == "8,4,2,1" and meta["hypersd_steps_trained"] == "8"
    assert meta["ss_output_name"] == "house" and meta["ss_base_model_version"] == "sd_v1"

    # every key lands on a WebUI Lora module, by WebUI's own rules
    pipe = StableDiffusionPipeline.from_pretrained(tiny, local_files_only=True, safety_checker=None)
    assert lora.check_webui_coverage(keys, lora.webui_layer_names(pipe.unet)) == []

    # diffusers loads it, and it changes the output
    g = torch.Generator().manual_seed(0)
    x, t, hidden = torch.randn(1, 4, 8, 8, generator=g), torch.tensor([999]), torch.randn(1, 77, 32, generator=g)
    with torch.no_grad():
        before = pipe.unet(x, t, encoder_hidden_states=hidden).sample
        pipe.load_lora_weights(str(final))
        after = pipe.unet(x, t, encoder_hidden_states=hidden).sample
    assert not torch.allclose(before, after)


@pytest.mark.parametrize(
    ("make_data", "extra", "message"),
    [
        (lambda p: p.mkdir() or p, [], "no training images in"),
        (lambda p: Image.new("RGB", (32, 32)).save(p.mkdir() or p / "a.png") or p, [], r"no caption for .*a\.png"),
        (
            lambda p: (p.mkdir(), (p / "bad.png").write_bytes(b"junk"), (p / "bad.txt").write_text("x")) and p,
            [],
            r"cannot read image .*bad\.png",
        ),
        (
            lambda p: (p.parent / "prompts.txt").write_text("a\n") and p.parent / "prompts.txt",
            ["--base", "sdxl"],
            "mismatch",
        ),
    ],
    ids=["empty-folder", "missing-caption", "unreadable-image", "sd15-sdxl-mismatch"],
)
def test_bad_input_is_refused_with_a_message_naming_the_cause(tiny, tmp_path, capsys, make_data, extra, message):
    data = make_data(tmp_path / "data")
    out = tmp_path / "out"
    code = cli.main(
        ["--model", str(tiny), "--data", str(data), "--out", "x", "--output-dir", str(out), *extra, *COMMON]
    )
    assert code == 1
    assert pytest.importorskip("re").search(message, capsys.readouterr().err)
    assert not (out / "x.safetensors").exists()


def test_bad_arguments_exit_2(capsys):
    assert cli.main(["--model", "m", "--stages", "8,3"]) == 2
    assert "stages" in capsys.readouterr().err


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes(tiny, prompts, tmp_path):
    out = tmp_path / "out"
    base = ["--model", str(tiny), "--data", str(prompts), "--out", "run", "--output-dir", str(out), *COMMON]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hypersd", "distill", *base, "--stages", "8", "--steps-per-stage", "100000"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = out / "run.run" / "log.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and not (log.exists() and '"event": "step"' in log.read_text()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err
    assert not (out / "run.safetensors").exists()
    done = max(e["global_step"] for e in _events(log) if e["event"] == "interrupted")
    assert (out / "run.run" / "checkpoints" / "latest").is_file()
    # the same command with --resume carries on from the checkpoint (here told to end one step later)
    assert cli.main([*base, "--stages", "8", "--steps-per-stage", str(done + 1), "--resume"]) == 0
    events = _events(log)
    assert [e["step"] for e in events if e["event"] == "step"][-1] == done + 1
    with safe_open(str(out / "run.safetensors"), framework="pt") as handle:
        assert handle.metadata()["hypersd_steps_trained"] == str(done + 1)


def test_two_processes_under_accelerate_launch_ctrl_c_and_resume(tiny, prompts, tmp_path):
    out = tmp_path / "out"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    run = ["-m", "hypersd", "distill", "--model", str(tiny), "--data", str(prompts), "--out", "ddp"]
    run += ["--output-dir", str(out), "--stages", "2,1", "--adversarial", "true", *COMMON]
    env = dict(_env(), ACCELERATE_USE_CPU="1")  # CPU data parallel: torchrun processes with the gloo backend
    log = out / "ddp.run" / "log.jsonl"

    # Ctrl-C in a terminal reaches the whole process group: launcher and both workers
    proc = subprocess.Popen(
        [*launch, "--main_process_port", str(_free_port()), *run, "--steps-per-stage", "100000"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and '"event": "step"' in log.read_text()):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    events = _events(log)
    assert next(e for e in events if e["event"] == "start")["processes"] == 2
    done = next(e["global_step"] for e in events if e["event"] == "interrupted")
    checkpoint = out / "ddp.run" / "checkpoints" / (out / "ddp.run" / "checkpoints" / "latest").read_text()
    assert sorted(p.name for p in checkpoint.iterdir()) == ["rng-0.pt", "rng-1.pt", "state.pt"], err[-2000:]
    assert not (out / "ddp.safetensors").exists()

    cmd = [*launch, "--main_process_port", str(_free_port()), *run, "--steps-per-stage", str(done + 1), "--resume"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    total = 2 * (done + 1)
    assert result.stdout.count(f"done after {total} steps") == 1  # only the main process reports
    steps = [e["step"] for e in _events(log) if e["event"] == "step"]
    assert steps == list(range(1, total + 1))  # one writer, no step lost or repeated
    with safe_open(str(out / "ddp.safetensors"), framework="pt") as handle:
        assert handle.metadata()["hypersd_steps_trained"] == str(total)


def test_cli_sdxl_with_aspect_buckets(tmp_path):
    from diffusers import UNet2DConditionModel

    model = build_tiny_model(tmp_path / "xl", base="sdxl")
    data = tmp_path / "imgs"
    data.mkdir()
    for i, size in enumerate([(128, 128), (200, 100), (100, 180)]):
        Image.new("RGB", size, (80 * i, 90, 200)).save(data / f"{i}.png")
        (data / f"{i}.txt").write_text(f"thing {i}")
    out = tmp_path / "out"
    args = ["--model", str(model), "--data", str(data), "--out", "xl", "--output-dir", str(out), "--stages", "1"]
    args += ["--steps-per-stage", "2", *COMMON, "--resolution", "192"]
    assert cli.main(args) == 0
    cached = next(e for e in _events(out / "xl.run" / "log.jsonl") if e["event"] == "cached")
    # buckets of area <= 192² with aspect within 1:2, multiples of 64 (width x height): by hand from the sizes
    assert cached["buckets"] == {"192x192": 1, "256x128": 1, "128x256": 1}
    with safe_open(str(out / "xl.safetensors"), framework="pt") as handle:
        keys = list(handle.keys())
        assert handle.metadata()["ss_base_model_version"] == "sdxl_base_v1-0"
    assert all(
        k.startswith(("lora_unet_input_blocks_", "lora_unet_middle_block_", "lora_unet_output_blocks_")) for k in keys
    )
    unet = UNet2DConditionModel.from_pretrained(model / "unet", local_files_only=True)
    assert lora.check_webui_coverage(keys, lora.webui_layer_names(unet)) == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: ["--lr", "-0.001"], "learning_rate must be above 0"),
        (lambda tmp: ["--lr", "0"], "learning_rate must be above 0"),
        (lambda tmp: ["--config", str(_write(tmp / "run.json", "{bad json"))], r"run\.json is not valid JSON"),
        (lambda tmp: ["--config", str(_write(tmp / "run.toml", "x = ["))], r"run\.toml is not valid TOML"),
        (lambda tmp: ["--config", str(_write(tmp / "run.json", '{"learning_rate": "fast"}'))], "wrong type"),
        (lambda tmp: ["--config", str(_write(tmp / "run.json", '{"stages": 8}'))], "wrong form"),
        (lambda tmp: ["--output-dir", str(_write(tmp / "afile", "x") / "sub")], r"lies under .*afile, which is a file"),
        (lambda tmp: ["--work-dir", str(_write(tmp / "afile", "x"))], r"afile, which is a file"),
        (lambda tmp: ["--stages", "8,4,dmd,2"], "dmd starts from the TSCD student"),
        (lambda tmp: ["--stages", "8,feedback"], "needs a reward model"),
        (lambda tmp: ["--out", "x" * 300], "at most 120 characters"),
    ],
    ids=[
        "negative-lr",
        "zero-lr",
        "bad-json",
        "bad-toml",
        "wrong-type",
        "wrong-form",
        "output-under-a-file",
        "work-dir-is-a-file",
        "stage-order",
        "feedback-without-reward",
        "long-name",
    ],  # fmt: skip
)
def test_bad_settings_are_refused_at_once_with_a_message_and_no_traceback(tmp_path, capsys, make, message):
    args = ["--model", str(tmp_path / "model.safetensors"), "--data", str(tmp_path), "--output-dir", str(tmp_path)]
    code = cli.main([*args, *make(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("Hyper-SD:") and "Traceback" not in err
    assert pytest.importorskip("re").search(message, err), err
    assert not list(tmp_path.rglob("*.safetensors"))


def _write(path, text):
    path.write_text(text)
    return path
