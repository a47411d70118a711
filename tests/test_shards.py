import io
import json
import tarfile

import numpy as np
import pytest

from conftest import make_sample
from simgen import dataset, shards
from simgen.runs import sha256_file


def test_sample_round_trip_keeps_rgb_instances_and_depth_to_the_unit(tmp_path):
    samples = [make_sample(i) for i in range(5, 8)]
    record = shards.write_shard(tmp_path / "shard-000000.tar", samples, depth_scale=1000.0)
    assert record["count"] == 3 and record["first_index"] == 5
    assert record["sha256"] == sha256_file(tmp_path / "shard-000000.tar")
    back = list(shards.iter_shard(tmp_path / "shard-000000.tar", 1000.0))
    assert [s.index for s in back] == [5, 6, 7]
    for a, b in zip(samples, back):
        np.testing.assert_array_equal(a.rgb, b.rgb)
        np.testing.assert_array_equal(a.inst, b.inst)
        assert np.abs(a.depth - b.depth).max() <= 0.0005 + 1e-6  # half a millimetre
        assert (b.depth[0, :3] == 0).all()
        assert b.meta == a.meta


def test_depth_encoding_marks_out_of_range_invalid():
    units = shards.encode_depth(np.array([0.0, -1.0, np.inf, np.nan, 1.0, 300.0]), 256.0)
    assert units.tolist() == [0, 0, 0, 0, 256, 0]  # 300 m x 256 does not fit 16 bits
    assert shards.decode_depth(np.array([256], np.uint16), 256.0)[0] == 1.0


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    shards.write_shard(tmp_path / "shard-000001.tar", [make_sample(0)], 1000.0)
    assert [p.name for p in tmp_path.iterdir()] == ["shard-000001.tar"]


def test_identical_samples_give_byte_identical_shards(tmp_path):
    a = shards.write_shard(tmp_path / "a.tar", [make_sample(0)], 1000.0)
    b = shards.write_shard(tmp_path / "b.tar", [make_sample(0)], 1000.0)
    assert a["sha256"] == b["sha256"]


def test_truncated_shard_error_names_the_file_and_sample(tmp_path):
    path = tmp_path / "shard-000000.tar"
    shards.write_shard(path, [make_sample(i) for i in range(3)], 1000.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(shards.ShardError, match=r"shard-000000\.tar near sample 00000000[0-2]: corrupt or truncated"):
        list(shards.iter_shard(path, 1000.0))


def test_sample_missing_a_member_is_named(tmp_path):
    path = tmp_path / "shard-000000.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("000000004.json")
        payload = json.dumps({}).encode()
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(shards.ShardError, match="sample 000000004 lacks rgb.png"):
        list(shards.iter_shard(path, 1000.0))


def test_manifest_round_trip_and_foreign_manifest(tmp_path):
    assert shards.load_manifest(tmp_path) is None
    shards.save_manifest(tmp_path, shards.new_manifest(depth_scale=1000.0, max_depth_m=10.0, samples_per_shard=4, n=0,
                                                       config={}, seed=0, generator="test"))
    assert shards.load_manifest(tmp_path)["version"] == 1
    (tmp_path / "manifest.json").write_text('{"name": "something else"}')
    with pytest.raises(shards.ShardError, match="not a simgen-shards manifest"):
        shards.load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(shards.ShardError, match="unreadable manifest"):
        shards.load_manifest(tmp_path)


def test_dataset_reads_only_committed_shards_and_verifies_checksums(tmp_path):
    (tmp_path / "shards").mkdir()
    rec = shards.write_shard(tmp_path / "shards" / shards.shard_name(0), [make_sample(0), make_sample(1)], 1000.0)
    shards.write_shard(tmp_path / "shards" / shards.shard_name(1), [make_sample(2)], 1000.0)  # not committed
    manifest = shards.new_manifest(depth_scale=1000.0, max_depth_m=10.0, samples_per_shard=2, n=3, config={}, seed=0,
                                   generator="test")
    shards.save_manifest(tmp_path, {**manifest, "shards": {rec["name"]: rec}})
    ds = dataset.DatasetReader(tmp_path)
    assert len(ds) == 2 and [s.index for s in ds.iter_samples()] == [0, 1]
    assert ds.verify(rec) is None
    with open(tmp_path / "shards" / rec["name"], "r+b") as f:
        f.seek(700)
        f.write(b"\x00\x01\x02")
    assert ds.verify(rec) == "checksum mismatch"


def test_dataset_writer_splits_commits_and_completes(tmp_path):
    root = tmp_path / "ds"
    with dataset.DatasetWriter(root, depth_scale=1000.0, max_depth_m=10.0, samples_per_shard=2, generator="test") as w:
        for i in range(5):
            w.add(make_sample(i))
        assert not dataset.DatasetReader(root).complete  # n is set when the writer closes
    ds = dataset.DatasetReader(root)
    assert ds.complete and len(ds) == 5 and ds.manifest["n"] == 5
    assert [r["count"] for r in ds.shards] == [2, 2, 1]
    assert [s.index for s in ds.iter_samples()] == list(range(5))
    assert all(ds.verify(r) is None for r in ds.shards)
    with pytest.raises(shards.ShardError, match="not empty"):
        dataset.DatasetWriter(root, depth_scale=1000.0, max_depth_m=10.0)
    with pytest.raises(shards.ShardError, match="sample 3 added where 0 was next"):
        dataset.DatasetWriter(tmp_path / "other", depth_scale=1000.0, max_depth_m=10.0).add(make_sample(3))


def test_a_committed_shard_is_not_replaced_by_other_contents(tmp_path):
    with dataset.DatasetWriter(tmp_path, depth_scale=1000.0, max_depth_m=10.0, samples_per_shard=2) as w:
        w.add(make_sample(0))
        w.add(make_sample(1))
    committed = shards.load_manifest(tmp_path)["shards"][shards.shard_name(0)]
    other = dict(committed, sha256="0" * 64)
    with pytest.raises(shards.ShardError, match="already committed with other contents"):
        dataset.commit_shard(tmp_path, other)
    assert shards.load_manifest(tmp_path)["shards"][shards.shard_name(0)] == committed
    dataset.commit_shard(tmp_path, dict(committed, count=3, sha256="1" * 64))  # a short shard may grow (--n extended)


def test_plain_webdataset_reads_a_shard_with_the_16_bit_decoder_of_the_docs(tmp_path):
    """docs/shard-format.md: webdataset's own image decoders cut 16-bit PNGs to 8 bits; the
    two-line decoder shown there keeps depth and instance ids exact."""
    wds = pytest.importorskip("webdataset")
    from PIL import Image

    samples = [make_sample(i) for i in range(3)]
    path = tmp_path / "shard-000000.tar"
    shards.write_shard(path, samples, 1000.0)

    def png16(key, data):  # the docs' decoder
        if key.endswith(("depth.png", "inst.png")):
            return np.array(Image.open(io.BytesIO(data)))

    got = list(wds.WebDataset(str(path), shardshuffle=False).decode(png16, "rgb8"))
    assert [g["__key__"] for g in got] == [s.key for s in samples]
    for g, s in zip(got, samples):
        assert g["depth.png"].dtype == np.uint16
        np.testing.assert_array_equal(g["depth.png"], shards.encode_depth(s.depth, 1000.0))
        np.testing.assert_array_equal(g["inst.png"], s.inst)
        np.testing.assert_array_equal(g["rgb.png"], s.rgb)
        assert g["json"]["index"] == s.index


def test_a_flipped_bit_is_caught_by_the_checksum_on_read(tmp_path):
    with dataset.DatasetWriter(tmp_path / "ds", depth_scale=1000.0, max_depth_m=10.0, samples_per_shard=2) as w:
        for i in range(2):
            w.add(make_sample(i))
    ds = dataset.DatasetReader(tmp_path / "ds")
    path = ds.shard_path(ds.shards[0])
    data = bytearray(path.read_bytes())
    data[1700] ^= 0x10  # inside the first sample's depth PNG data
    path.write_bytes(bytes(data))
    with pytest.raises(shards.ShardError, match="shard-000000.tar: checksum mismatch.*repair"):
        list(ds.iter_samples())


def test_a_concurrent_commit_never_replaces_a_fuller_shard(tmp_path):
    """Two jobs with different --n into one dataset: the 2-sample version of shard 0 arriving after
    the 4-sample one is dropped, and the committed file keeps its 4 samples."""
    root = tmp_path / "ds"
    root.mkdir()
    shards.save_manifest(root, shards.new_manifest(depth_scale=1000.0, max_depth_m=10.0, samples_per_shard=4, n=4,
                                                   config={}, seed=0, generator="test"))
    target = root / "shards" / shards.shard_name(0)
    full = shards.stage_shard(target, [make_sample(i) for i in range(4)], 1000.0)
    short = shards.stage_shard(target, [make_sample(i) for i in range(2)], 1000.0)
    dataset.commit_shard(root, full)
    kept = dataset.commit_shard(root, short)
    assert kept["count"] == 4
    ds = dataset.DatasetReader(root)
    assert [s.index for s in ds.iter_samples()] == [0, 1, 2, 3]
    assert not list((root / "shards").glob("*.tmp-*"))


def test_inspect_names_the_repair_for_a_damaged_shard(tmp_path):
    from simgen.report import format_report, inspect_dataset

    with dataset.DatasetWriter(tmp_path / "ds", depth_scale=1000.0, max_depth_m=10.0, samples_per_shard=2) as w:
        for i in range(4):
            w.add(make_sample(i))
    (tmp_path / "ds" / "shards" / shards.shard_name(1)).unlink()
    text = format_report(inspect_dataset(tmp_path / "ds"))
    assert "CHECKSUMS FAILED: shard-000001.tar: missing" in text
    assert "statistics from the 2 readable samples of 4" in text and "simgen render --out" in text


def test_a_failed_manifest_write_leaves_the_old_manifest_and_no_temporary_file(tmp_path, monkeypatch):
    import errno
    import os
    shards.save_manifest(tmp_path, shards.new_manifest(depth_scale=1000.0, max_depth_m=10.0, samples_per_shard=4, n=0,
                                                       config={}, seed=0, generator="test"))
    before = (tmp_path / "manifest.json").read_text()

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        shards.save_manifest(tmp_path, {"format": shards.FORMAT_NAME, "version": 1, "shards": {"x": 1}})
    monkeypatch.undo()
    assert (tmp_path / "manifest.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
