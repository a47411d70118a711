"""Manifest, resume and extension logic, without rendering (render tests are in test_render.py)."""

import json

import pytest

from simgen import dataset, shards
from simgen.config import RenderConfig
from simgen.runner import (DatasetError, _adopt_or_clean, damaged_shards, iter_shard_ranges, open_dataset_for_render,
                           plan, render)
from conftest import make_sample


def test_new_dataset_gets_a_manifest_with_config_seed_and_depth_semantics(tmp_path):
    cfg = RenderConfig(scene="outdoor", samples_per_shard=4)
    m = open_dataset_for_render(tmp_path / "ds", cfg, seed=3, n=10)
    on_disk = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert on_disk == m
    assert m["format"] == "simgen-shards" and m["seed"] == 3 and m["n"] == 10
    assert m["depth"]["scale"] == 256.0 and m["depth"]["invalid"] == 0
    assert m["config"]["intrinsics"] == {"width": 320, "height": 240, "fx": 259.45, "fy": 259.45, "cx": 160.0, "cy": 120.0}
    assert plan(m, 10) == [(0, 0, 4), (1, 4, 8), (2, 8, 10)]
    assert plan(m, 10, shard_range=(1, 2)) == [(1, 4, 8)]


def test_a_different_config_or_seed_is_refused_and_nothing_is_touched(tmp_path):
    out = tmp_path / "ds"
    open_dataset_for_render(out, RenderConfig(samples_per_shard=4), seed=0, n=8)
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(DatasetError, match="differs in: .*scene"):
        open_dataset_for_render(out, RenderConfig(scene="outdoor", samples_per_shard=4), seed=0, n=8)
    with pytest.raises(DatasetError, match="its seed is 0"):
        open_dataset_for_render(out, RenderConfig(samples_per_shard=4), seed=1, n=8)
    assert (out / "manifest.json").read_bytes() == before


def test_a_foreign_directory_is_refused(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(DatasetError, match="not empty and holds no simgen dataset"):
        open_dataset_for_render(tmp_path / "photos", RenderConfig(), seed=0, n=8)
    assert [p.name for p in (tmp_path / "photos").iterdir()] == ["holiday.jpg"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "manifest.json").write_text('{"format": "coco"}')
    with pytest.raises(DatasetError, match="holds something else"):
        open_dataset_for_render(tmp_path / "other", RenderConfig(), seed=0, n=8)


def test_unwritable_out_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="is a file"):
        open_dataset_for_render(tmp_path / "file", RenderConfig(), seed=0, n=8)


def test_resume_skips_committed_shards_and_extension_regrows_the_last_one(tmp_path):
    out = tmp_path / "ds"
    m = open_dataset_for_render(out, RenderConfig(samples_per_shard=4), seed=0, n=6)
    for k, a, b in plan(m, 6):
        dataset.commit_shard(out, shards.write_shard(out / "shards" / shards.shard_name(k),
                                             [make_sample(i) for i in range(a, b)], 1000.0))
    m = open_dataset_for_render(out, RenderConfig(samples_per_shard=4), seed=0, n=6)
    assert plan(m, 6) == []
    m = open_dataset_for_render(out, RenderConfig(samples_per_shard=4), seed=0, n=11)
    assert m["n"] == 11
    assert plan(m, 11) == [(1, 4, 8), (2, 8, 11)]  # shard 1 held 2 samples; it grows to 4


def test_half_written_shards_are_removed_and_complete_uncommitted_ones_adopted(tmp_path):
    out = tmp_path / "ds"
    m = open_dataset_for_render(out, RenderConfig(samples_per_shard=2), seed=0, n=6)
    shard_dir = out / "shards"
    shard_dir.mkdir()
    # shard 0: killed while writing; shard 1: renamed but the manifest commit was lost; shard 2: truncated
    (shard_dir / (shards.shard_name(0) + ".tmp-1234")).write_bytes(b"partial")
    shards.write_shard(shard_dir / shards.shard_name(1), [make_sample(2), make_sample(3)], 1000.0)
    shards.write_shard(shard_dir / shards.shard_name(2), [make_sample(4)], 1000.0)
    todo = _adopt_or_clean(out, m, plan(m, 6))
    assert todo == [(0, 0, 2), (2, 4, 6)]
    assert not list(shard_dir.glob("*.tmp-*"))
    assert shards.load_manifest(out)["shards"][shards.shard_name(1)]["count"] == 2


def test_job_array_parts_cover_every_shard_once():
    parts = list(iter_shard_ranges(n=1000, samples_per_shard=64, parts=4))
    covered = [k for a, b in parts for k in range(a, b)]
    assert covered == list(range(16))


def _commit(out, k, indices):
    return dataset.commit_shard(out, shards.stage_shard(out / "shards" / shards.shard_name(k),
                                                       [make_sample(i) for i in indices], 1000.0))


def test_a_missing_or_damaged_committed_shard_is_planned_again(tmp_path):
    out = tmp_path / "ds"
    open_dataset_for_render(out, RenderConfig(samples_per_shard=2), seed=0, n=6)
    for k in range(3):
        _commit(out, k, range(2 * k, 2 * k + 2))
    m = shards.load_manifest(out)
    assert damaged_shards(out, m) == set() and plan(m, 6) == []
    (out / "shards" / shards.shard_name(0)).unlink()
    path = out / "shards" / shards.shard_name(1)
    path.write_bytes(path.read_bytes()[:-100])  # truncated
    assert damaged_shards(out, m) == {shards.shard_name(0), shards.shard_name(1)}
    assert plan(m, 6, damaged=damaged_shards(out, m)) == [(0, 0, 2), (1, 2, 4)]
    # a flipped bit with size and time kept: found only by the full check (--verify)
    path = out / "shards" / shards.shard_name(2)
    data = bytearray(path.read_bytes())
    data[1700] ^= 1
    st = path.stat()
    path.write_bytes(bytes(data))
    import os
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert shards.shard_name(2) not in damaged_shards(out, m)
    assert shards.shard_name(2) in damaged_shards(out, m, verify=True)
    # the repaired shard (same samples) replaces the damaged file under its committed name
    _commit(out, 1, range(2, 4))
    assert dataset.shard_intact(out, shards.load_manifest(out)["shards"][shards.shard_name(1)], verify=True)


def test_a_shard_range_past_the_end_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="past the end: 8 samples make 2 shards"):
        render(tmp_path / "ds", RenderConfig(samples_per_shard=4), seed=0, n=8, shard_range=(5, 7), show_progress=False)
    assert not (tmp_path / "ds").exists()


def test_a_live_writers_temporary_file_is_left_alone(tmp_path):
    import os
    import socket
    live = tmp_path / f"shard-000000.tar.tmp-{socket.gethostname()}-{os.getppid()}-abcd"
    dead = tmp_path / f"shard-000000.tar.tmp-{socket.gethostname()}-999999999-abcd"
    assert shards.writer_alive(live) and not shards.writer_alive(dead)


def test_a_family_without_objects_is_named(tmp_path):
    from simgen.assets import BUILTIN_DIR, load_libraries
    from simgen.runner import missing_families

    builtin = load_libraries([BUILTIN_DIR])
    assert missing_families(builtin, RenderConfig(scene="mixed")) == []
    indoor_only = type(builtin)(meshes=[m for m in builtin.meshes if m["family"] == ["indoor"]])
    assert missing_families(indoor_only, RenderConfig(scene="outdoor")) == ["outdoor"]
    assert missing_families(indoor_only, RenderConfig(scene="mixed", indoor_ratio=1.0)) == []
