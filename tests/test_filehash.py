import hashlib
import json
import os
import struct

import pytest
import torch
from safetensors.torch import save_file

from hypersd.filehash import (
    HashCache,
    addnet_hash_safetensors,
    addnet_short_hash,
    safetensors_header_length,
    sha256_file,
)


def test_sha256_file_matches_hashlib_and_reports_progress(tmp_path):
    data = os.urandom(2 * 1024 * 1024 + 123)  # more than one chunk, not a multiple of it
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    calls = []
    assert sha256_file(path, lambda done, total: calls.append((done, total))) == hashlib.sha256(data).hexdigest()
    assert calls[-1] == (len(data), len(data))
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert len(calls) == 3


def test_sha256_of_an_empty_file(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    # the sha256 of no bytes, a well-known constant
    assert sha256_file(path) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _webui_addnet_hash(path):
    """WebUI v1.10.1 modules/hashes.py addnet_hash_safetensors, copied verbatim (it takes an open file)."""
    hash_sha256 = hashlib.sha256()
    blksize = 1024 * 1024
    with open(path, "rb") as b:
        b.seek(0)
        header = b.read(8)
        n = int.from_bytes(header, "little")
        offset = n + 8
        b.seek(offset)
        for chunk in iter(lambda: b.read(blksize), b""):
            hash_sha256.update(chunk)
    return hash_sha256.hexdigest()


def test_addnet_hash_of_a_real_safetensors_file(tmp_path):
    path = tmp_path / "lora.safetensors"
    tensors = {"lora_unet_x.lora_down.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4)}
    save_file(tensors, str(path), metadata={"ss_output_name": "x"})
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    assert safetensors_header_length(path) == n
    json.loads(raw[8 : 8 + n])  # the header really is JSON of that length
    # by hand: the tensor bytes are what follows the header
    tensor_bytes = tensors["lora_unet_x.lora_down.weight"].numpy().tobytes()
    assert raw[8 + n :] == tensor_bytes
    expected = hashlib.sha256(tensor_bytes).hexdigest()
    assert addnet_hash_safetensors(path) == expected == _webui_addnet_hash(path)
    assert addnet_short_hash(path) == expected[:12]
    # metadata is in the header: changing it changes the file hash but not the addnet hash
    other = tmp_path / "renamed.safetensors"
    save_file(tensors, str(other), metadata={"ss_output_name": "a much longer output name"})
    assert sha256_file(other) != sha256_file(path)
    assert addnet_hash_safetensors(other) == expected


def test_addnet_hash_rejects_a_tiny_file(tmp_path):
    path = tmp_path / "short.safetensors"
    path.write_bytes(b"abc")
    with pytest.raises(ValueError, match="Hyper-SD: .*shorter than 8 bytes"):
        addnet_hash_safetensors(path)


def test_hash_cache_rehashes_only_changed_files_and_persists(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"one")
    json_path = tmp_path / "cache" / "hashes.json"
    cache = HashCache(json_path)
    assert cache.cached(path) is None
    assert cache.sha256(path) == hashlib.sha256(b"one").hexdigest()

    import hypersd.filehash as filehash

    calls = []
    real = filehash.sha256_file
    monkeypatch.setattr(filehash, "sha256_file", lambda p, progress=None: calls.append(p) or real(p, progress))
    assert cache.sha256(path) == hashlib.sha256(b"one").hexdigest()
    assert calls == []  # unchanged: served from the cache

    reloaded = HashCache(json_path)  # a new process reads the JSON file
    assert reloaded.cached(path) == hashlib.sha256(b"one").hexdigest()

    path.write_bytes(b"two!")  # new size (and mtime): the cached value must not be used
    assert cache.cached(path) is None
    assert cache.sha256(path) == hashlib.sha256(b"two!").hexdigest()
    assert calls == [path]


def test_hash_cache_ignores_a_damaged_json_file(tmp_path):
    json_path = tmp_path / "hashes.json"
    json_path.write_text("{not json")
    cache = HashCache(json_path)
    path = tmp_path / "f"
    path.write_bytes(b"x")
    assert cache.sha256(path) == hashlib.sha256(b"x").hexdigest()
    assert json.loads(json_path.read_text())  # rewritten, valid now
