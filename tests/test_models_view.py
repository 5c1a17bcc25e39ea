import hashlib
import os

import pytest
from hubstub import HubStub, isolate_hub_env

import hypersd.download_job as download_job
from hypersd import models_view
from hypersd.catalog import CATALOG, CatalogEntry
from hypersd.download import DownloadManager
from hypersd.filehash import HashCache

REPO = "test-org/test-repo"
WAIT = 10.0


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    isolate_hub_env(monkeypatch, tmp_path / "hf-home")


def entry_for(entry_id, data, *, sha256="data", verified="A", exact=True, kind="lora", base="sdxl"):
    digest = hashlib.sha256(data).hexdigest() if sha256 == "data" else sha256
    return CatalogEntry(
        id=entry_id,
        repo=REPO,
        filename=f"{entry_id}.safetensors",
        local_filename=f"{entry_id}-local.safetensors",
        kind=kind,
        base=base,
        size=len(data),
        size_exact=exact,
        sha256=digest,
        verified=verified if digest else None,
        sources="test",
    )


def make_manager(tmp_path, entries, endpoint="http://127.0.0.1:9"):
    return DownloadManager(
        lambda kind: tmp_path / kind,
        catalog=entries,
        endpoint=endpoint,
        console=None,
        timeout=2.0,
        hash_cache=HashCache(tmp_path / "hashes.json"),
    )


@pytest.mark.parametrize(
    ("size", "exact", "text"),
    [
        (None, False, "unknown"),
        (999, True, "999 B"),
        (269_127_064, False, "~269.1 MB"),  # hand: 269127064 / 1e6 = 269.127
        (6_938_081_905, True, "6.9 GB"),
        (1_500, True, "1.5 KB"),
    ],
)
def test_human_size(size, exact, text):
    assert models_view.human_size(size, exact) == text


def test_hash_level_follows_the_catalog():
    levels = {entry.id: models_view.hash_level(entry) for entry in CATALOG}
    assert set(levels.values()) <= {"A", "B", "B+", "none"}
    unet = next(e for e in CATALOG if e.kind == "unet")
    assert levels[unet.id] == "none"  # CATALOG_FACTS.md: no hash found for the 1-step UNet
    assert all(levels[e.id] == e.verified for e in CATALOG if e.sha256)


def test_rows_show_missing_present_and_corrupt_without_hashing(tmp_path, monkeypatch):
    good, bad = b"g" * 100, b"b" * 50
    entries = [entry_for("good", good), entry_for("bad", bad), entry_for("absent", b"x" * 10)]
    manager = make_manager(tmp_path, entries)
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / "good-local.safetensors").write_bytes(good)
    (tmp_path / "lora" / "bad-local.safetensors").write_bytes(bad[:20])  # truncated: wrong exact size
    hashed = []
    monkeypatch.setattr(manager.hash_cache, "sha256", lambda *a, **k: hashed.append(a) or "0" * 64)
    rows = {row.id: row for row in models_view.build_rows(manager)}
    assert hashed == []  # a table refresh never reads file contents
    assert rows["good"].status == "present" and rows["good"].details == "present, not yet hashed"
    assert rows["bad"].status == "corrupt" and "expected 50" in rows["bad"].details
    assert rows["absent"].status == "missing"
    assert rows["good"].cells() == ["good", "good-local.safetensors", "SDXL", "lora", "100 B", "A", "present",
                                    "present, not yet hashed"]  # fmt: skip
    assert len(models_view.HEADERS) == len(rows["good"].cells())


def test_verify_hashes_and_then_the_table_knows(tmp_path):
    good = b"g" * 100
    manager = make_manager(tmp_path, [entry_for("good", good)])
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / "good-local.safetensors").write_bytes(good)
    text = models_view.verify(manager, ["good"])
    assert "good-local.safetensors: present" in text and "verified" in text
    assert models_view.build_rows(manager)[0].details == "verified"  # cached hash, still no reading


def test_start_downloads_fetches_missing_and_skips_present(tmp_path):
    data, other = os.urandom(200_000), b"o" * 64
    entries = [entry_for("new", data), entry_for("have", other)]
    with HubStub() as hub:
        hub.add_file(REPO, "new.safetensors", data, redirect=True)
        manager = make_manager(tmp_path, entries, hub.endpoint)
        (tmp_path / "lora").mkdir()
        (tmp_path / "lora" / "renamed copy.safetensors").write_bytes(other)  # present under another name
        manager.find_present("have")  # hashes it (what Verify does), so the cheap status knows it
        message = models_view.start_downloads(manager, ["new", "have"])
        assert "new-local.safetensors: download started" in message
        assert "have-local.safetensors: already present" in message and "renamed copy" in message
        assert manager.job("new").wait(WAIT)
        assert manager.job("have") is None
        assert hub.requests_for("have.safetensors") == []
    assert (tmp_path / "lora" / "new-local.safetensors").read_bytes() == data
    progress = models_view.progress_text(manager)
    assert progress.startswith("- new: done, ") and "new-local.safetensors" in progress
    assert models_view.build_rows(manager)[0].status == "present"


def test_failed_download_says_manual_step_and_leaves_no_file(tmp_path):
    entry = entry_for("gone", b"z" * 10)
    with HubStub() as hub:  # the stub knows no files: 404
        manager = make_manager(tmp_path, [entry], hub.endpoint)
        models_view.start_downloads(manager, ["gone"])
        assert manager.job("gone").wait(WAIT)
        url = manager.url_for("gone")
    row = models_view.build_rows(manager)[0]
    assert row.status == "missing"
    assert row.details.startswith("last download failed: ") and url in row.details
    assert str(tmp_path / "lora" / "gone-local.safetensors") in row.details
    assert not (tmp_path / "lora" / "gone-local.safetensors").exists()
    assert "gone: failed:" in models_view.progress_text(manager)


def test_nothing_selected_and_cancel_of_idle_entries():
    class NoManager:  # would fail loudly if anything were called
        pass

    assert models_view.start_downloads(NoManager(), []).startswith("Hyper-SD: select")

    class Idle:
        def entries(self):
            return [entry_for("a", b"a")]

        def cancel(self, entry_id):
            return False

    assert "none of the selected" in models_view.cancel_downloads(Idle(), ["a"])


def test_missing_file_hint_names_the_tab_and_the_manual_step(tmp_path):
    entry = entry_for("hint", b"h")
    manager = make_manager(tmp_path, [entry], "https://hub.example")
    hint = models_view.missing_file_hint(manager, "hint")
    assert "'Hyper-SD Models' tab" in hint
    assert f"https://hub.example/{REPO}/resolve/main/hint.safetensors" in hint
    assert str(tmp_path / "lora" / "hint-local.safetensors") in hint


def test_job_text_for_running_jobs():
    snap = download_job.JobSnapshot("a", "downloading", 250, 1000, 10.0, "", "u", "t")
    assert models_view.job_text(snap) == "25 % of 1.0 KB"
    assert models_view.job_text(download_job.JobSnapshot("a", "downloading", 2500, None, 1.0, "", "u", "t")) == (
        "2.5 KB so far"
    )
