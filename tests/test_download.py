"""Downloads through huggingface_hub in a child process, against a local hub stand-in (no network)."""

import errno
import hashlib
import os
import pathlib
import threading
import time

import huggingface_hub
import pytest
from hubstub import HubStub, isolate_hub_env
from huggingface_hub.constants import DOWNLOAD_CHUNK_SIZE as CHUNK  # it writes its partial file in such chunks

import hypersd.download as download
from hypersd.catalog import CatalogEntry, file_url
from hypersd.download import (
    ERR_HASH,
    ERR_HTTP,
    ERR_NETWORK,
    ERR_OFFLINE,
    ERR_WRITE,
    DownloadManager,
    resolve_endpoint,
)
from hypersd.download_job import CANCELLED, DONE, FAILED, JobSnapshot, progress_line
from hypersd.download_verdict import verify_download
from hypersd.model_files import CORRUPT, MISSING, PRESENT

REPO = "test-org/test-repo"
#: huggingface_hub 0.x (WebUI v1.10.1 ships 0.36) resumes another process's partial file; 2.x starts afresh
RESUMES_ACROSS_PROCESSES = huggingface_hub.__version__.startswith("0.")
WAIT = 60.0  # generous upper bound per job: a child process starts (imports huggingface_hub) on 2 busy cores


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_entry(entry_id, data, *, sha256="data", verified="A", size="data", exact=True, kind="lora", hub_name=None):
    """A catalog entry for test bytes: hash and size default to the data's real ones."""
    digest = sha(data) if sha256 == "data" else sha256
    return CatalogEntry(
        id=entry_id,
        repo=REPO,
        filename=hub_name or f"{entry_id}.safetensors",
        local_filename=f"{entry_id}-local.safetensors",
        kind=kind,
        base="sdxl",
        size=len(data) if size == "data" else size,
        size_exact=exact and size is not None,
        sha256=digest,
        verified=verified if digest else None,
        sources="test",
    )


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    isolate_hub_env(monkeypatch, tmp_path / "hf-home")


@pytest.fixture
def hub():
    with HubStub() as stub:
        yield stub


class Harness:
    def __init__(self, tmp_path, hub, entries, **options):
        self.lora_dir = tmp_path / "models" / "Lora"
        self.unet_dir = tmp_path / "models" / "Unet"
        self.events: list[JobSnapshot] = []
        self.lines: list[str] = []
        options.setdefault("endpoint", hub.endpoint)
        options.setdefault("timeout", 5.0)
        self.manager = DownloadManager(
            lambda kind: self.lora_dir if kind == "lora" else self.unet_dir,
            catalog=entries,
            on_progress=self.events.append,
            console=self.lines.append,
            progress_interval=0.02,
            **options,
        )

    def run(self, entry_id, **kwargs) -> JobSnapshot:
        job = self.manager.start(entry_id, **kwargs)
        assert job.wait(WAIT), "the download did not finish"
        return job.snapshot()

    def wait_for(self, condition, what):
        deadline = time.monotonic() + WAIT
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.02)


def visible_files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def body_gets(hub, filename):
    return [r for r in hub.requests_for(filename) if r.method == "GET"]


def test_success_through_a_cdn_redirect(tmp_path, hub):
    data = os.urandom(3 * 1024 * 1024 + 17)
    entry = make_entry("ok", data)
    hub.add_file(REPO, entry.filename, data, redirect=True)
    h = Harness(tmp_path, hub, [entry])
    assert h.manager.inspect("ok").status == MISSING
    snap = h.run("ok")
    assert snap.state == DONE, snap.message
    final = h.lora_dir / entry.local_filename
    assert final.read_bytes() == data
    assert snap.path == str(final) and snap.sha256 == sha(data)
    assert visible_files(h.lora_dir) == [entry.local_filename]  # nothing else was ever in WebUI's folder
    assert not h.manager.files.staging_dir(entry).exists()  # the staging folder is cleaned up
    assert f"/cdn/{sha(data)}" in [r.path for r in body_gets(hub, entry.filename)]
    states = [e.state for e in h.events]
    assert states[0] == "queued" and states[-1] == DONE and "downloading" in states and "verifying" in states
    assert h.manager.inspect("ok").status == PRESENT and h.manager.inspect("ok").message == "verified"


def test_cancel_stops_at_once_and_the_next_start_resumes_with_range(tmp_path, hub):
    data = os.urandom(2 * CHUNK + 4096)
    entry = make_entry("resume", data)
    stub_file = hub.add_file(REPO, entry.filename, data, stall_after=CHUNK + 1000)
    h = Harness(tmp_path, hub, [entry], timeout=30.0)
    job = h.manager.start("resume")
    # the Models tab's progress is the partial file growing on disk
    h.wait_for(lambda: job.snapshot().bytes_done >= CHUNK, "no progress from the partial file")
    assert job.snapshot().state == "downloading" and job.snapshot().bytes_total == len(data)
    assert h.manager.cancel("resume")
    assert job.wait(10) and job.state == CANCELLED and "kept for resuming" in job.snapshot().message
    assert not (h.lora_dir / entry.local_filename).exists()
    assert h.manager.inspect("resume").partial_bytes == CHUNK  # huggingface_hub's .incomplete file is kept

    stub_file.stall_after = None
    second = h.run("resume")
    assert second.state == DONE, second.message
    resumed_from = body_gets(hub, entry.filename)[-1].headers.get("range")
    assert resumed_from == (f"bytes={CHUNK}-" if RESUMES_ACROSS_PROCESSES else None)
    assert not h.manager.files.staging_dir(entry).exists()  # old partial files go with the staging folder
    assert (h.lora_dir / entry.local_filename).read_bytes() == data


def test_a_dropped_connection_is_resumed(tmp_path, hub):
    data = os.urandom(CHUNK + 300_000)
    entry = make_entry("cut", data)
    hub.add_file(REPO, entry.filename, data, cut_after=CHUNK + 100_000, redirect=True)
    h = Harness(tmp_path, hub, [entry])
    snap = h.run("cut")  # huggingface_hub resumes a dropped stream itself in some versions; else the next start
    if snap.state != DONE:
        assert snap.error_kind == ERR_NETWORK and file_url(entry, hub.endpoint) in snap.message
        snap = h.run("cut")
    assert snap.state == DONE, snap.message
    assert [r.headers.get("range") for r in body_gets(hub, entry.filename)][-1] == f"bytes={CHUNK}-"
    assert (h.lora_dir / entry.local_filename).read_bytes() == data


def test_sha256_mismatch_deletes_the_downloaded_file(tmp_path, hub):
    data = b"the bytes the server sends" * 1000
    expected = sha(b"the bytes the catalog describes")
    entry = make_entry("bad", data, sha256=expected, verified="A", size=None)
    hub.add_file(REPO, entry.filename, data)
    h = Harness(tmp_path, hub, [entry])
    snap = h.run("bad")
    assert snap.state == FAILED and snap.error_kind == ERR_HASH
    assert expected in snap.message and sha(data) in snap.message and snap.message.startswith("Hyper-SD: ")
    assert visible_files(h.lora_dir) == []
    assert not (h.manager.files.staging_dir(entry) / entry.filename).exists()


def test_unconfirmed_hash_mismatch_is_refused_unless_allowed(tmp_path, hub):
    data = b"B-level file" * 500
    wrong = sha(b"what MIR says")
    entry = make_entry("levelb", data, sha256=wrong, verified="B")
    hub.add_file(REPO, entry.filename, data)
    h = Harness(tmp_path, hub, [entry])
    refused = h.run("levelb")
    assert refused.state == FAILED and refused.error_kind == ERR_HASH
    assert "unconfirmed" in refused.message and "allow_unverified=True" in refused.message
    assert visible_files(h.lora_dir) == []
    accepted = h.run("levelb", allow_unverified=True)
    assert accepted.state == DONE and any(sha(data) in w and wrong in w for w in accepted.warnings)
    status = h.manager.inspect("levelb")  # the catalog value is unconfirmed, so a differing hash is not "corrupt"
    assert status.status == PRESENT and "unconfirmed" in status.message


def test_unconfirmed_hash_mismatch_settled_by_the_hubs_own_hash(tmp_path, hub):
    data = b"the hub knows best" * 400
    entry = make_entry("hubsays", data, sha256=sha(b"stale"), verified="B+")
    hub.add_file(REPO, entry.filename, data, redirect=True)  # X-Linked-Etag = sha256(data)
    snap = Harness(tmp_path, hub, [entry]).run("hubsays")
    assert snap.state == DONE and "hub" in snap.message and snap.warnings


def test_hub_hash_disagreeing_with_the_bytes_fails(tmp_path, hub):
    data = b"bytes damaged on the way" * 100
    entry = make_entry("nohash", data, sha256=None, size=None)
    hub.add_file(REPO, entry.filename, data, redirect=True, linked_etag=sha(b"the real file"))
    h = Harness(tmp_path, hub, [entry])
    snap = h.run("nohash")
    assert snap.state == FAILED and snap.error_kind == ERR_HASH and sha(b"the real file") in snap.message
    assert visible_files(h.lora_dir) == []


def test_confirmed_hash_differing_from_the_hubs_stops_before_the_body(tmp_path, hub):
    data = b"an updated upstream file" * 100
    entry = make_entry("outdated", data, sha256=sha(b"old"), verified="A")
    hub.add_file(REPO, entry.filename, data, redirect=True)
    h = Harness(tmp_path, hub, [entry])
    snap = h.run("outdated")
    assert snap.state == FAILED and snap.error_kind == ERR_HASH and "outdated" in snap.message
    assert body_gets(hub, entry.filename) == [] and hub.requests_for(entry.filename, "HEAD")
    assert not (h.lora_dir / entry.local_filename).exists()


def test_entry_without_hash_downloads_with_a_warning(tmp_path, hub):
    data = b"unet weights" * 1000
    entry = make_entry("unet", data, sha256=None, size=None, kind="unet")
    hub.add_file(REPO, entry.filename, data)
    h = Harness(tmp_path, hub, [entry])
    snap = h.run("unet")
    assert snap.state == DONE
    assert (h.unet_dir / entry.local_filename).read_bytes() == data  # the kind picks the folder
    assert any(sha(data) in w for w in snap.warnings) and any(sha(data) in line for line in h.lines)


def test_404_names_the_url_and_the_folder(tmp_path, hub):
    entry = make_entry("gone", b"whatever")
    h = Harness(tmp_path, hub, [entry])
    snap = h.run("gone")
    assert snap.state == FAILED and snap.error_kind == ERR_HTTP and "HTTP 404" in snap.message
    assert file_url(entry, hub.endpoint) in snap.message
    assert str(h.lora_dir / entry.local_filename) in snap.message
    assert visible_files(h.lora_dir) == []


def test_unreachable_server_fails_with_the_manual_step(tmp_path, hub):
    entry = make_entry("down", b"x")
    h = Harness(tmp_path, hub, [entry], endpoint="http://127.0.0.1:9", timeout=2.0)  # nothing listens on port 9
    snap = h.run("down")
    assert snap.state == FAILED and snap.error_kind == ERR_NETWORK and "by hand" in snap.message
    assert "http://127.0.0.1:9/" in snap.message


def test_not_enough_free_space_is_refused_before_the_body(tmp_path, hub, monkeypatch):
    data = os.urandom(10_000)
    entry = make_entry("space", data)
    hub.add_file(REPO, entry.filename, data)
    h = Harness(tmp_path, hub, [entry])
    real_usage = download.shutil.disk_usage
    monkeypatch.setattr(download.shutil, "disk_usage", lambda p: real_usage(p)._replace(free=1000))
    snap = h.run("space")
    assert snap.state == FAILED and snap.error_kind == ERR_WRITE and "disk is full" in snap.message
    assert "9.8 KB needed" in snap.message  # 10,000 bytes, counted by hand
    assert body_gets(hub, entry.filename) == []


def test_write_failures_are_worded_from_their_errno(tmp_path, hub):
    entry = make_entry("w", b"x")
    manager = Harness(tmp_path, hub, [entry]).manager
    full = manager._failure(entry, {"kind": "write", "errno": errno.ENOSPC, "reason": "No space left on device"})
    assert full.kind == ERR_WRITE and "disk is full" in full.message and str(manager.target_dir(entry)) in full.message
    denied = manager._failure(entry, {"kind": "write", "errno": errno.EACCES, "reason": "Permission denied"})
    assert "no permission" in denied.message and "by hand" in denied.message


def test_unwritable_target_folder(tmp_path, hub):
    data = b"abc" * 100
    entry = make_entry("nofolder", data)
    hub.add_file(REPO, entry.filename, data)
    h = Harness(tmp_path, hub, [entry])
    h.lora_dir.parent.mkdir(parents=True)
    h.lora_dir.write_bytes(b"a file where the folder should be")
    snap = h.run("nofolder")
    assert snap.state == FAILED and snap.error_kind == ERR_WRITE and str(h.lora_dir) in snap.message
    assert hub.requests == []


def test_double_start_runs_one_download(tmp_path, hub):
    data = os.urandom(100_000)
    entry = make_entry("twice", data)
    hub.add_file(REPO, entry.filename, data, stall=0.5)
    h = Harness(tmp_path, hub, [entry])
    jobs = []
    clicks = [threading.Thread(target=lambda: jobs.append(h.manager.start("twice"))) for _ in range(8)]
    for click in clicks:
        click.start()
    for click in clicks:
        click.join()
    assert len({id(job) for job in jobs}) == 1
    assert h.manager.inspect("twice", deep=False).status == "downloading"
    assert jobs[0].wait(WAIT) and jobs[0].state == DONE
    assert len(body_gets(hub, entry.filename)) == 1


def test_file_present_under_another_name_is_not_fetched(tmp_path, hub):
    data = os.urandom(50_000)
    entry = make_entry("renamed", data)
    hub.add_file(REPO, entry.filename, data)
    h = Harness(tmp_path, hub, [entry])
    (h.lora_dir / "sub").mkdir(parents=True)
    copy = h.lora_dir / "sub" / "my-own-name.safetensors"
    copy.write_bytes(data)
    (h.lora_dir / "same-size-other.safetensors").write_bytes(os.urandom(len(data)))
    status = h.manager.inspect("renamed")
    assert status.status == PRESENT and status.path == str(copy)
    snap = h.run("renamed")
    assert snap.state == DONE and snap.path == str(copy) and "already present" in snap.message
    assert hub.requests == []


def test_corrupt_status_by_hash_and_replaced_by_a_verified_download(tmp_path, hub):
    data = os.urandom(40_000)
    entry = make_entry("corrupt", data)
    hub.add_file(REPO, entry.filename, data)
    h = Harness(tmp_path, hub, [entry])
    h.lora_dir.mkdir(parents=True)
    final = h.lora_dir / entry.local_filename
    final.write_bytes(os.urandom(len(data)))  # same size, other bytes
    assert h.manager.inspect("corrupt", deep=False).status == PRESENT  # not hashed yet
    assert h.manager.inspect("corrupt").status == CORRUPT
    assert h.manager.inspect("corrupt", deep=False).status == CORRUPT  # now cached
    assert h.run("corrupt").state == DONE
    assert final.read_bytes() == data and h.manager.inspect("corrupt").status == PRESENT


def test_hf_endpoint_environment_variable_is_used(tmp_path, hub, monkeypatch):
    data = b"via env" * 10
    entry = make_entry("env", data)
    hub.add_file(REPO, entry.filename, data)
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint + "/")
    h = Harness(tmp_path, hub, [entry], endpoint=None)
    assert h.manager.url_for("env") == f"{hub.endpoint}/{REPO}/resolve/main/{entry.filename}"
    assert h.run("env").state == DONE
    assert resolve_endpoint("http://explicit/") == "http://explicit"


def test_hf_token_is_sent_to_the_hub_but_not_to_another_host(tmp_path, hub, monkeypatch):
    data = b"gated" * 10
    entry = make_entry("gated", data)
    hub.add_file(REPO, entry.filename, data, redirect=True, redirect_host="localhost")
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    h = Harness(tmp_path, hub, [entry])
    assert h.run("gated").state == DONE
    to_hub = [r for r in hub.requests_for(entry.filename, "HEAD") if not r.path.startswith("/cdn/")]
    assert to_hub and to_hub[0].headers["authorization"] == "Bearer hf_test_token"
    cdn = [r for r in body_gets(hub, entry.filename) if r.path.startswith("/cdn/")]
    assert cdn and all("authorization" not in r.headers and r.headers["host"].startswith("localhost") for r in cdn)


def test_no_token_no_authorization(tmp_path, hub):
    data = b"public" * 10
    entry = make_entry("public", data)
    hub.add_file(REPO, entry.filename, data)
    assert Harness(tmp_path, hub, [entry]).run("public").state == DONE
    assert hub.requests and all("authorization" not in r.headers for r in hub.requests)


def test_proxy_from_the_environment_is_used(tmp_path, hub, monkeypatch):
    data = b"proxied" * 10
    entry = make_entry("proxied", data)
    hub.add_file(REPO, entry.filename, data)
    monkeypatch.setenv("http_proxy", hub.endpoint)
    monkeypatch.setenv("HTTP_PROXY", hub.endpoint)
    h = Harness(tmp_path, hub, [entry], endpoint="http://hub.invalid")  # reachable only through the proxy
    assert h.run("proxied").state == DONE
    assert hub.requests[0].target == f"http://hub.invalid/{REPO}/resolve/main/{entry.filename}"


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])  # huggingface_hub reads both
def test_offline_mode_is_refused_with_the_url_and_the_folder(tmp_path, hub, monkeypatch, variable):
    entry = make_entry("offline", b"x")
    monkeypatch.setenv(variable, "1")
    h = Harness(tmp_path, hub, [entry])
    snap = h.run("offline")
    assert snap.state == FAILED and snap.error_kind == ERR_OFFLINE and f"{variable} is set" in snap.message
    assert file_url(entry, hub.endpoint) in snap.message and str(h.lora_dir / entry.local_filename) in snap.message
    assert hub.requests == []


def test_cancel_a_queued_job(tmp_path, hub):
    slow, other = b"s" * 1000, b"o" * 1000
    entries = [make_entry("first", slow), make_entry("second", other)]
    hub.add_file(REPO, entries[0].filename, slow, stall=1.0)
    hub.add_file(REPO, entries[1].filename, other)
    h = Harness(tmp_path, hub, entries, max_parallel=1)
    first = h.manager.start("first")
    h.wait_for(lambda: first.state == "downloading", "the first job never started")  # it holds the only slot
    second = h.manager.start("second")
    assert h.manager.cancel("second")
    assert second.wait(WAIT) and second.state == CANCELLED
    assert first.wait(WAIT) and first.state == DONE
    assert hub.requests_for(entries[1].filename, "HEAD") == []
    assert not h.manager.cancel("second")  # nothing running any more


def test_verify_download_rules():
    entry_a = make_entry("a", b"x")
    good = sha(b"x")
    assert verify_download(entry_a, good).ok
    assert not verify_download(entry_a, sha(b"y")).ok
    assert not verify_download(entry_a, sha(b"y"), hub_sha256=sha(b"y")).ok  # "A" wins over the hub
    assert not verify_download(entry_a, good, hub_sha256=sha(b"z")).ok  # the transfer disagrees with the hub
    assert not verify_download(entry_a, sha(b"y"), allow_unverified=True).ok  # cannot override an "A" hash
    verdict = verify_download(make_entry("n", b"x", sha256=None), good)
    assert verdict.ok and verdict.warnings


def test_progress_line():
    snap = JobSnapshot("x", "downloading", 512 * 1024 * 1024, 1024 * 1024 * 1024, 100 * 1024 * 1024, "", "u", "t")
    assert progress_line(snap, "f.safetensors") == (
        "Hyper-SD: f.safetensors  50.0% 512.0 MB/1.0 GB, 100.0 MB/s, ETA 5 s"
    )


def test_every_catalog_entry_downloads_from_a_hub_stand_in(tmp_path, hub):
    """Every real entry's repo/file/revision path and local name, with small stand-in bytes and their hashes."""
    from dataclasses import replace

    from hypersd.catalog import CATALOG
    from hypersd.loras import LoraInfo
    from hypersd.plan import CurrentValues, make_plan
    from hypersd.presets import PRESET_IDS, catalog_entries
    from hypersd.settings import HyperSettings

    entries = []
    for index, real in enumerate(CATALOG):
        data = f"{real.id} stand-in {index}".encode() * 50
        hub.add_file(real.repo, real.filename, data, revision=real.revision, redirect=index % 2 == 0)
        entries.append(replace(real, size=len(data), size_exact=True, sha256=sha(data), verified="A"))
    folders = {"lora": tmp_path / "Lora", "unet": tmp_path / "Unet", "checkpoint": tmp_path / "Stable-diffusion"}
    manager = DownloadManager(folders.__getitem__, endpoint=hub.endpoint, catalog=entries, console=None, max_parallel=4)
    jobs = [manager.start(entry.id) for entry in entries]
    for job in jobs:
        assert job.wait(WAIT * 2) and job.state == DONE, job.snapshot().message
    for entry in entries:
        assert (folders[entry.kind] / entry.local_filename).is_file() and manager.inspect(entry.id).status == PRESENT
    assert len(list(folders["lora"].iterdir())) == sum(e.kind == "lora" for e in entries)

    # ...and each downloaded LoRA is the one its presets pick, as the accordion sees the Lora folder
    available = {f.stem: LoraInfo(f.stem, path=str(f)) for f in folders["lora"].iterdir()}
    picked = 0
    for entry in (e for e in entries if e.kind == "lora"):
        for preset in (p for p in PRESET_IDS if entry.id in {e.id for e in catalog_entries(p)}):
            plan = make_plan(HyperSettings(enabled=True, preset=preset), entry.base, available, [""], CurrentValues())
            assert plan.ok, (entry.id, preset, plan.errors)
            assert plan.lora_name == pathlib.Path(entry.local_filename).stem, (entry.id, preset)
            picked += 1
    assert picked >= sum(e.kind == "lora" for e in entries)


def test_a_copy_under_the_hub_name_is_recognised_without_a_known_size(tmp_path, hub):
    data = b"tcd weights" * 100
    entry = make_entry("tcd", data, size=None, verified="B", hub_name="pytorch_lora_weights.safetensors")
    h = Harness(tmp_path, hub, [entry])
    (h.lora_dir / "tcd").mkdir(parents=True)
    (h.lora_dir / "pytorch_lora_weights.safetensors").write_bytes(b"another model's weights")  # hashed, rejected
    (h.lora_dir / "tcd" / "pytorch_lora_weights.safetensors").write_bytes(b"not searched: size unknown")
    assert h.manager.inspect("tcd").status == MISSING
    (h.lora_dir / "pytorch_lora_weights.safetensors").write_bytes(data)
    snap = h.run("tcd")
    assert snap.state == DONE and snap.path == str(h.lora_dir / "pytorch_lora_weights.safetensors")
    assert hub.requests == []
