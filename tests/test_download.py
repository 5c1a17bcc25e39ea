import errno
import hashlib
import os
import pathlib
import threading
import time

import pytest
from hubstub import HubStub, isolate_hub_env

import hypersd.download as download
from hypersd.catalog import CatalogEntry, file_url
from hypersd.download import (
    CANCELLED,
    CORRUPT,
    DONE,
    ERR_HASH,
    ERR_HTTP,
    ERR_NETWORK,
    ERR_OFFLINE,
    ERR_TIMEOUT,
    ERR_WRITE,
    FAILED,
    MISSING,
    PART_SUFFIX,
    PRESENT,
    DownloadManager,
    JobSnapshot,
    parse_sha256_etag,
    progress_line,
    resolve_endpoint,
    resolve_token,
    verify_download,
)

REPO = "test-org/test-repo"
WAIT = 10.0  # generous upper bound per job; the jobs themselves finish in milliseconds


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
def clean_env(monkeypatch):
    isolate_hub_env(monkeypatch)


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
        options.setdefault("connect_timeout", 2.0)
        options.setdefault("read_timeout", 2.0)
        options.setdefault("retries", 0)
        self.manager = DownloadManager(
            lambda kind: self.lora_dir if kind == "lora" else self.unet_dir,
            catalog=entries,
            on_progress=self.events.append,
            console=self.lines.append,
            progress_interval=0.0,
            **options,
        )

    def run(self, entry_id, **kwargs) -> JobSnapshot:
        job = self.manager.start(entry_id, **kwargs)
        assert job.wait(WAIT), "the download did not finish"
        return job.snapshot()


def visible_files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_success_through_a_cdn_redirect(tmp_path, hub):
    data = os.urandom(3 * 1024 * 1024 + 17)
    entry = make_entry("ok", data)
    hub.add_file(REPO, entry.filename, data, redirect=True)
    h = Harness(tmp_path, hub, [entry])
    assert h.manager.status("ok") == MISSING
    snap = h.run("ok")
    assert snap.state == DONE, snap.message
    final = h.lora_dir / entry.local_filename
    assert final.read_bytes() == data
    assert snap.path == str(final) and snap.sha256 == sha(data) and snap.bytes_done == len(data)
    assert visible_files(h.lora_dir) == [entry.local_filename]  # no temporary file left
    paths = [r.path for r in hub.requests_for(entry.filename)]
    assert paths == [f"/{REPO}/resolve/main/{entry.filename}", f"/cdn/{sha(data)}"]
    states = [e.state for e in h.events]
    assert states[0] == "queued" and states[-1] == DONE and "downloading" in states and "verifying" in states
    assert any("%" in line and entry.local_filename in line for line in h.lines)
    assert h.manager.status("ok") == PRESENT
    assert h.manager.inspect("ok").message == "verified"


def test_interrupted_download_resumes_with_range(tmp_path, hub):
    data = os.urandom(2 * 1024 * 1024)
    entry = make_entry("resume", data)
    hub.add_file(REPO, entry.filename, data, cut_after=700_000)
    h = Harness(tmp_path, hub, [entry], retries=0)
    first = h.run("resume")
    assert first.state == FAILED and first.error_kind == ERR_NETWORK
    assert "700000" in first.message and file_url(entry, hub.endpoint) in first.message
    part = h.lora_dir / (entry.local_filename + PART_SUFFIX)
    assert part.stat().st_size == 700_000 and part.read_bytes() == data[:700_000]
    assert not (h.lora_dir / entry.local_filename).exists()
    assert h.manager.inspect("resume").partial_bytes == 700_000

    second = h.run("resume")
    assert second.state == DONE, second.message
    gets = hub.requests_for(entry.filename)
    assert len(gets) == 2 and "range" not in gets[0].headers
    assert gets[1].headers["range"] == "bytes=700000-"
    assert (h.lora_dir / entry.local_filename).read_bytes() == data
    assert not part.exists()


def test_automatic_retry_resumes_in_the_same_job(tmp_path, hub):
    data = os.urandom(1024 * 1024)
    entry = make_entry("retry", data)
    hub.add_file(REPO, entry.filename, data, cut_after=100_000, redirect=True)
    h = Harness(tmp_path, hub, [entry], retries=1)
    snap = h.run("retry")
    assert snap.state == DONE, snap.message
    cdn_gets = [r for r in hub.requests_for(entry.filename) if r.path.startswith("/cdn/")]
    assert [r.headers.get("range") for r in cdn_gets] == [None, "bytes=100000-"]  # Range survives the redirect
    assert (h.lora_dir / entry.local_filename).read_bytes() == data


def test_server_ignoring_range_restarts_cleanly(tmp_path, hub):
    data = os.urandom(300_000)
    entry = make_entry("norange", data)
    hub.add_file(REPO, entry.filename, data, ignore_range=True)
    h = Harness(tmp_path, hub, [entry])
    h.lora_dir.mkdir(parents=True)
    (h.lora_dir / (entry.local_filename + PART_SUFFIX)).write_bytes(b"x" * 1000)  # stale bytes must not survive
    snap = h.run("norange")
    assert snap.state == DONE, snap.message
    assert (h.lora_dir / entry.local_filename).read_bytes() == data


def test_partial_longer_than_the_file_restarts(tmp_path, hub):
    data = os.urandom(5_000)
    entry = make_entry("toolong", data)
    hub.add_file(REPO, entry.filename, data)
    h = Harness(tmp_path, hub, [entry], retries=1)
    h.lora_dir.mkdir(parents=True)
    (h.lora_dir / (entry.local_filename + PART_SUFFIX)).write_bytes(b"y" * 9_000)
    snap = h.run("toolong")
    assert snap.state == DONE, snap.message
    assert (h.lora_dir / entry.local_filename).read_bytes() == data


def test_sha256_mismatch_deletes_the_temporary_file(tmp_path, hub):
    data = b"the bytes the server sends" * 1000
    expected = sha(b"the bytes the catalog describes")
    entry = make_entry("bad", data, sha256=expected, verified="A", size=None)
    hub.add_file(REPO, entry.filename, data)
    h = Harness(tmp_path, hub, [entry])
    snap = h.run("bad")
    assert snap.state == FAILED and snap.error_kind == ERR_HASH
    assert expected in snap.message and sha(data) in snap.message and snap.message.startswith("Hyper-SD: ")
    assert visible_files(h.lora_dir) == []  # neither the final nor the temporary file


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
    # on disk: present (the catalog value is unconfirmed, so a differing hash is not "corrupt")
    status = h.manager.inspect("levelb")
    assert status.status == PRESENT and "unconfirmed" in status.message


def test_unconfirmed_hash_mismatch_settled_by_the_hubs_own_hash(tmp_path, hub):
    data = b"the hub knows best" * 400
    entry = make_entry("hubsays", data, sha256=sha(b"stale"), verified="B+")
    hub.add_file(REPO, entry.filename, data, redirect=True)  # X-Linked-Etag = sha256(data)
    h = Harness(tmp_path, hub, [entry])
    snap = h.run("hubsays")
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
    assert snap.state == FAILED and snap.error_kind == ERR_HTTP and "404" in snap.message
    assert file_url(entry, hub.endpoint) in snap.message
    assert str(h.lora_dir / entry.local_filename) in snap.message
    assert visible_files(h.lora_dir) == []


def test_a_stalled_server_times_out_fast(tmp_path, hub):
    data = b"slow" * 1000
    entry = make_entry("slow", data)
    hub.add_file(REPO, entry.filename, data, stall=5.0)
    h = Harness(tmp_path, hub, [entry], connect_timeout=4.0, read_timeout=0.3)
    started = time.monotonic()
    snap = h.run("slow")
    assert time.monotonic() - started < 2.0  # the read timeout, not the connect timeout, ended it
    assert snap.state == FAILED and snap.error_kind == ERR_TIMEOUT and "timeout" in snap.message
    assert file_url(entry, hub.endpoint) in snap.message and str(h.lora_dir) in snap.message
    assert not (h.lora_dir / entry.local_filename).exists()


def test_unreachable_server_fails_with_the_manual_step(tmp_path, hub):
    entry = make_entry("down", b"x")
    h = Harness(tmp_path, hub, [entry], endpoint="http://127.0.0.1:9")  # nothing listens on port 9
    snap = h.run("down")
    assert snap.state == FAILED and snap.error_kind == ERR_NETWORK and "by hand" in snap.message


def test_disk_full_keeps_the_old_final_file_and_says_so(tmp_path, hub, monkeypatch):
    data = os.urandom(200_000)
    entry = make_entry("full", data)
    hub.add_file(REPO, entry.filename, data)
    h = Harness(tmp_path, hub, [entry])
    h.lora_dir.mkdir(parents=True)
    old = h.lora_dir / entry.local_filename
    old.write_bytes(b"an older, damaged copy")

    def disk_full(file, chunk):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download, "_write", disk_full)
    assert h.manager.status("full") == CORRUPT  # wrong size for an exact-size entry
    snap = h.run("full")
    assert snap.state == FAILED and snap.error_kind == ERR_WRITE and "disk is full" in snap.message
    assert str(h.lora_dir) in snap.message
    assert old.read_bytes() == b"an older, damaged copy"  # nothing final was touched


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
    hub.add_file(REPO, entry.filename, data, stall=0.3)
    h = Harness(tmp_path, hub, [entry])
    jobs = []
    clicks = [threading.Thread(target=lambda: jobs.append(h.manager.start("twice"))) for _ in range(8)]
    for click in clicks:
        click.start()
    for click in clicks:
        click.join()
    assert len({id(job) for job in jobs}) == 1
    assert h.manager.status("twice", deep=False) == "downloading"
    assert jobs[0].wait(WAIT) and jobs[0].state == DONE
    assert len(hub.requests_for(entry.filename)) == 1


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


def test_existing_local_file_with_the_right_hash_is_not_fetched(tmp_path, hub):
    data = b"already here" * 10
    entry = make_entry("here", data, size=None)
    h = Harness(tmp_path, hub, [entry])
    h.lora_dir.mkdir(parents=True)
    (h.lora_dir / entry.local_filename).write_bytes(data)
    assert h.run("here").state == DONE and hub.requests == []


def test_corrupt_status_by_hash(tmp_path, hub):
    data = b"good" * 100
    entry = make_entry("corrupt", data)
    h = Harness(tmp_path, hub, [entry])
    h.lora_dir.mkdir(parents=True)
    (h.lora_dir / entry.local_filename).write_bytes(b"evil" * 100)  # same size, other bytes
    assert h.manager.status("corrupt", deep=False) == PRESENT  # not hashed yet
    assert h.manager.status("corrupt") == CORRUPT
    assert h.manager.status("corrupt", deep=False) == CORRUPT  # now cached


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
    resolve, cdn = hub.requests_for(entry.filename)
    assert resolve.headers["authorization"] == "Bearer hf_test_token"
    assert "authorization" not in cdn.headers and cdn.headers["host"].startswith("localhost")


def test_no_token_no_authorization(tmp_path, hub):
    data = b"public" * 10
    entry = make_entry("public", data)
    hub.add_file(REPO, entry.filename, data)
    h = Harness(tmp_path, hub, [entry])
    assert h.run("public").state == DONE
    assert "authorization" not in hub.requests[0].headers
    assert resolve_token(False) is None and resolve_token(" hf_x ") == "hf_x"


def test_proxy_from_the_environment_is_used(tmp_path, hub, monkeypatch):
    data = b"proxied" * 10
    entry = make_entry("proxied", data)
    hub.add_file(REPO, entry.filename, data)
    monkeypatch.setenv("http_proxy", hub.endpoint)
    h = Harness(tmp_path, hub, [entry], endpoint="http://hub.invalid")  # reachable only through the proxy
    assert h.run("proxied").state == DONE
    assert hub.requests[0].target == f"http://hub.invalid/{REPO}/resolve/main/{entry.filename}"


def test_offline_mode_is_honoured(tmp_path, hub, monkeypatch):
    entry = make_entry("offline", b"x")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    h = Harness(tmp_path, hub, [entry])
    snap = h.run("offline")
    assert snap.state == FAILED and snap.error_kind == ERR_OFFLINE and "HF_HUB_OFFLINE" in snap.message
    assert hub.requests == []


def test_cancel_a_queued_job(tmp_path, hub):
    slow, other = b"s" * 1000, b"o" * 1000
    entries = [make_entry("first", slow), make_entry("second", other)]
    hub.add_file(REPO, entries[0].filename, slow, stall=0.5)
    hub.add_file(REPO, entries[1].filename, other)
    h = Harness(tmp_path, hub, entries, max_parallel=1)
    first = h.manager.start("first")
    deadline = time.monotonic() + WAIT
    while first.state != "downloading" and time.monotonic() < deadline:  # it holds the only slot now
        time.sleep(0.01)
    second = h.manager.start("second")
    assert h.manager.cancel("second")
    assert second.wait(WAIT) and second.state == CANCELLED
    assert first.wait(WAIT) and first.state == DONE
    assert hub.requests_for(entries[1].filename) == []
    assert not h.manager.cancel("second")  # nothing running any more


def test_verify_download_rules():
    entry_a = make_entry("a", b"x")
    good = sha(b"x")
    assert verify_download(entry_a, good).ok
    assert not verify_download(entry_a, sha(b"y")).ok
    assert not verify_download(entry_a, sha(b"y"), hub_sha256=sha(b"y")).ok  # "A" wins over the hub
    assert not verify_download(entry_a, good, hub_sha256=sha(b"z")).ok  # the transfer disagrees with the hub
    assert not verify_download(entry_a, sha(b"y"), allow_unverified=True).ok  # cannot override an "A" hash
    entry_none = make_entry("n", b"x", sha256=None)
    verdict = verify_download(entry_none, good)
    assert verdict.ok and verdict.warnings


def test_small_helpers():
    assert parse_sha256_etag('W/"' + "A" * 64 + '"') == "a" * 64
    assert parse_sha256_etag('"0123456789abcdef0123456789abcdef01234567"') is None  # a git sha1
    snap = JobSnapshot("x", "downloading", 512 * 1024 * 1024, 1024 * 1024 * 1024, 100 * 1024 * 1024, "", "u", "t")
    assert progress_line(snap, "f.safetensors") == (
        "Hyper-SD: f.safetensors  50.0% 512.0 MB/1.0 GB, 100.0 MB/s, ETA 5 s"
    )


def test_a_corrupt_local_file_is_replaced_by_a_verified_download(tmp_path, hub):
    data = os.urandom(40_000)
    entry = make_entry("replace", data)
    hub.add_file(REPO, entry.filename, data)
    h = Harness(tmp_path, hub, [entry])
    h.lora_dir.mkdir(parents=True)
    final = h.lora_dir / entry.local_filename
    final.write_bytes(os.urandom(len(data)))  # same size, wrong bytes
    assert h.manager.status("replace") == CORRUPT
    assert h.run("replace").state == DONE
    assert final.read_bytes() == data and h.manager.status("replace") == PRESENT


def test_works_without_huggingface_hub(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # any import of it now raises ImportError
    monkeypatch.setitem(sys.modules, "huggingface_hub.utils", None)
    headers = download.request_headers("hf_abc")
    assert headers["authorization"] == "Bearer hf_abc" and "sd-webui-hyper-sd" in headers["user-agent"]
    assert "authorization" not in download.request_headers(None)
    assert resolve_endpoint() == "https://huggingface.co"


def test_every_catalog_entry_downloads_from_a_hub_stand_in(tmp_path, hub):
    """Every real entry's repo/file/revision path and local name, with small stand-in bytes and their hashes."""
    from dataclasses import replace

    from hypersd.catalog import CATALOG

    entries = []
    for index, real in enumerate(CATALOG):
        data = f"{real.id} stand-in {index}".encode() * 50
        hub.add_file(real.repo, real.filename, data, revision=real.revision, redirect=index % 2 == 0)
        entries.append(replace(real, size=len(data), size_exact=True, sha256=sha(data), verified="A"))
    folders = {"lora": tmp_path / "Lora", "unet": tmp_path / "Unet", "checkpoint": tmp_path / "Stable-diffusion"}
    manager = DownloadManager(folders.__getitem__, endpoint=hub.endpoint, catalog=entries, console=None, retries=0)
    jobs = [manager.start(entry.id) for entry in entries]
    for job in jobs:
        assert job.wait(WAIT) and job.state == DONE, job.snapshot().message
    for entry in entries:
        assert (folders[entry.kind] / entry.local_filename).is_file()
        assert manager.status(entry.id) == PRESENT
    assert len(list(folders["lora"].iterdir())) == sum(e.kind == "lora" for e in entries)

    # ...and each downloaded LoRA is the one its presets pick, as the accordion sees the Lora folder
    from hypersd.loras import LoraInfo
    from hypersd.plan import CurrentValues, make_plan
    from hypersd.presets import PRESET_IDS, catalog_entries
    from hypersd.settings import HyperSettings

    available = {f.stem: LoraInfo(f.stem, path=str(f)) for f in folders["lora"].iterdir()}
    picked = 0
    for entry in entries:
        for preset in (p for p in PRESET_IDS if entry in catalog_entries(p)):
            current = CurrentValues(model_name=entry.local_filename if entry.kind == "checkpoint" else None)
            plan = make_plan(HyperSettings(enabled=True, preset=preset), entry.base, available, [""], current)
            if entry.kind == "lora":
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
    assert h.manager.status("tcd") == MISSING
    (h.lora_dir / "pytorch_lora_weights.safetensors").write_bytes(data)
    snap = h.run("tcd")
    assert snap.state == DONE and snap.path == str(h.lora_dir / "pytorch_lora_weights.safetensors")
    assert hub.requests == []


def test_not_enough_free_space_is_refused_before_writing(tmp_path, hub, monkeypatch):
    data = os.urandom(10_000)
    entry = make_entry("space", data)
    hub.add_file(REPO, entry.filename, data)
    h = Harness(tmp_path, hub, [entry])
    real_usage = download.shutil.disk_usage
    monkeypatch.setattr(download.shutil, "disk_usage", lambda p: real_usage(p)._replace(free=1000))
    snap = h.run("space")
    assert snap.state == FAILED and snap.error_kind == ERR_WRITE and "disk is full" in snap.message
    assert "9.8 KB needed" in snap.message  # 10,000 bytes, counted by hand
    assert visible_files(h.lora_dir) == []
