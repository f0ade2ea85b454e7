"""Every shard of a tensor cache carries its SHA-256 in the manifest, and `verify` checks it."""
import json

import pytest
import torch

from aria_train.data.cache import TensorCache, TensorCacheWriter, file_sha256, write_shard_file


def _cache(root, rows=10, shard_rows=4):
    with TensorCacheWriter(root, shard_rows=shard_rows) as writer:
        writer.append(x=torch.arange(rows * 3, dtype=torch.float32).reshape(rows, 3))
    return root


def test_each_shard_has_its_checksum_and_verify_reads_them_all(tmp_path):
    cache = TensorCache(_cache(tmp_path / "c"))
    shards = cache.manifest["shards"]
    assert [s["rows"] for s in shards] == [4, 4, 2]
    assert all(s["sha256"] == file_sha256(tmp_path / "c" / s["file"]) for s in shards)
    assert cache.verify() == 3


def test_a_flipped_byte_is_found_and_named(tmp_path):
    root = _cache(tmp_path / "c")
    shard = root / "shard-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0x01
    shard.write_bytes(bytes(data))
    cache = TensorCache(root)  # opening reads the manifest only: still cheap
    with pytest.raises(ValueError, match="shard-00001.safetensors is corrupt"):
        cache.verify()


def test_resumed_writes_keep_checksums_and_old_caches_are_not_checked(tmp_path):
    root = tmp_path / "c"
    writer = TensorCacheWriter(root, shard_rows=4)
    writer.append(x=torch.zeros(5, 3))  # one full shard written, one row buffered (lost on a kill)
    writer = TensorCacheWriter.resume(root)
    writer.append(x=torch.ones(4, 3))
    writer.close()
    assert TensorCache(root).verify() == 2
    manifest = json.loads((root / "manifest.json").read_text())
    for shard in manifest["shards"]:
        del shard["sha256"]  # as written before checksums existed
    (root / "manifest.json").write_text(json.dumps(manifest))
    assert TensorCache(root).verify() == 0


def test_damaged_shards_names_each_shard_and_its_rows(tmp_path):
    root = _cache(tmp_path / "c")
    assert TensorCache(root).damaged_shards() == {}
    first = root / "shard-00000.safetensors"
    first.write_bytes(first.read_bytes()[:-1] + bytes([first.read_bytes()[-1] ^ 0x01]))  # a flipped byte
    last = root / "shard-00002.safetensors"
    last.write_bytes(last.read_bytes()[:-8])  # cut short
    cache = TensorCache(root)
    assert cache.damaged_shards() == {"shard-00000.safetensors": range(0, 4), "shard-00002.safetensors": range(8, 10)}
    # without checksums only what the headers show: the cut shard, not the flipped byte
    assert cache.damaged_shards(checksums=False) == {"shard-00002.safetensors": range(8, 10)}


def test_replace_shard_swaps_a_listed_shard_and_its_checksum(tmp_path):
    root = _cache(tmp_path / "c")
    shard = root / "shard-00001.safetensors"
    good = shard.read_bytes()
    shard.write_bytes(good[:-8])  # cut short
    writer = TensorCacheWriter.resume(root)
    replacement = write_shard_file(tmp_path / "new.safetensors", {"x": torch.arange(12, 24, dtype=torch.float32).reshape(4, 3)})
    with pytest.raises(ValueError, match="cannot replace"):
        writer.replace_shard("shard-00002.safetensors", replacement)  # 4 rows for a shard of 2
    writer.replace_shard("shard-00001.safetensors", replacement)
    assert not replacement.exists() and not TensorCache(root, allow_incomplete=True).manifest["complete"]
    writer.close()
    assert shard.read_bytes() == good and TensorCache(root).verify() == 3
