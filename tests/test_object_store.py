"""Datasets in an object store (docs/scale-out.md): the lock-free commit protocol, readers and training at
s3:// URLs, and the one-line errors of a store that cannot be used. Every server runs on 127.0.0.1
(simgen/local_s3.py) and stops with the session."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from simgen import dataset, shards, store
from simgen.synthetic import write_synthetic_dataset

from conftest import SIZE, make_sample


def _objects(url: str) -> dict[str, bytes]:
    """Every object under a URL prefix, by its path below the prefix."""
    fs, path = store.filesystem(url)
    return {p[len(path) + 1:]: fs.cat_file(p) for p in fs.find(path)}


def _cli(tool: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"{tool}.cli", *args], capture_output=True, text=True,
                          timeout=300, env=env or dict(os.environ))


def test_a_dataset_written_to_the_store_holds_the_bytes_of_the_local_one(tmp_path, s3):
    local = write_synthetic_dataset(tmp_path / "local", n=20, samples_per_shard=8)
    remote = write_synthetic_dataset(f"{s3}/sims", n=20, samples_per_shard=8)
    objects = _objects(remote)
    for k in range(3):
        name = shards.shard_name(k)
        assert objects[f"shards/{name}"] == (local / "shards" / name).read_bytes()
        assert json.loads(objects[f"commits/{name}.json"])["sha256"] == store.sha256(local / "shards" / name)
    a, b = dataset.DatasetReader(local), dataset.DatasetReader(remote)
    assert b.complete and len(b) == 20
    for x, y in zip(a.iter_samples(), b.iter_samples()):
        assert x.index == y.index and np.array_equal(x.rgb, y.rgb) and np.array_equal(x.depth, y.depth)
    r = _cli("simgen", "inspect", remote, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["samples"] == 20 and json.loads(r.stdout)["bad_shards"] == {}
    r = _cli("simgen", "preview", remote, "--out", str(tmp_path / "sheet.png"), "--count", "4")
    assert r.returncode == 0 and (tmp_path / "sheet.png").stat().st_size > 500, r.stderr


def test_a_shard_counts_only_once_its_record_is_written(s3):
    root = write_synthetic_dataset(f"{s3}/sims", n=16, samples_per_shard=8)
    fs, path = store.filesystem(root)
    fs.rm_file(f"{path}/commits/{shards.shard_name(1)}.json")
    manifest = json.loads(fs.cat_file(f"{path}/manifest.json"))
    del manifest["shards"][shards.shard_name(1)]  # as before the writer consolidated the manifest
    fs.pipe_file(f"{path}/manifest.json", json.dumps(manifest).encode())
    reader = dataset.DatasetReader(root)
    assert len(reader) == 8 and not reader.complete  # the shard without a record is not read


def test_committing_one_shard_twice_keeps_one_record_and_refuses_other_contents(tmp_path, s3):
    root = f"{s3}/sims"
    shards.save_manifest(root, shards.new_manifest(depth_scale=1000.0, max_depth_m=10.0, samples_per_shard=2, n=2,
                                                   config={}, seed=0, generator="test"))
    samples = [make_sample(0), make_sample(1)]
    first = dataset.publish_shard(root, shards.stage_shard(tmp_path / "a" / "shard-000000.tar", samples, 1000.0))
    again = dataset.publish_shard(root, shards.stage_shard(tmp_path / "b" / "shard-000000.tar", samples, 1000.0))
    assert again == first and list(tmp_path.rglob("*.tar*")) == []  # staged files are gone either way
    other = shards.stage_shard(tmp_path / "c" / "shard-000000.tar", [make_sample(0, seed=9), make_sample(1)], 1000.0)
    with pytest.raises(shards.ShardError, match="already committed with other contents"):
        dataset.publish_shard(root, other)
    assert store.sha256(f"{root}/shards/shard-000000.tar") == first["sha256"]  # nothing was replaced


def test_a_manifest_is_created_once_when_two_drivers_race(s3):
    root = f"{s3}/sims"
    made = [shards.new_manifest(depth_scale=1000.0, max_depth_m=10.0, samples_per_shard=2, n=2, config={"who": who},
                                seed=0, generator="test") for who in range(8)]
    won: list[int] = []
    threads = [threading.Thread(target=lambda m=m: won.append(m["config"]["who"]) if shards.save_manifest(
        root, m, create=True) else None) for m in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and shards.load_manifest(root)["config"] == {"who": won[0]}


def test_a_prefix_that_holds_other_things_is_refused_and_left_alone(s3):
    from simgen.config import RenderConfig
    from simgen.runner import DatasetError, open_dataset_for_render

    fs, path = store.filesystem(s3)
    fs.pipe_file(f"{path}/theirs/data.csv", b"a,b\n")
    with pytest.raises(DatasetError, match="not empty and holds no simgen dataset"):
        open_dataset_for_render(store.location(f"{s3}/theirs"), RenderConfig(), 0, 4)
    assert _objects(f"{s3}/theirs") == {"data.csv": b"a,b\n"}
    open_dataset_for_render(store.location(f"{s3}/ours"), RenderConfig(), 0, 4)
    with pytest.raises(DatasetError, match="another config"):
        open_dataset_for_render(store.location(f"{s3}/ours"), RenderConfig(), 1, 4)


@pytest.mark.parametrize("case", ["unreachable endpoint", "wrong credentials", "missing bucket", "no package",
                                  "unknown scheme"])
def test_a_store_that_cannot_be_used_is_one_line(s3, s3_server, case):
    from simgen.local_s3 import free_port

    url, env = f"{s3}/sims", dict(os.environ)
    if case == "unreachable endpoint":
        env["AWS_ENDPOINT_URL"], said = f"http://127.0.0.1:{free_port()}", "cannot reach the object store"
    elif case == "wrong credentials":
        env["AWS_SECRET_ACCESS_KEY"], said = "not-the-secret", "access denied by the store"
    elif case == "missing bucket":
        url, said = "s3://no-such-bucket-here/sims", "bucket no-such-bucket-here does not exist"
    elif case == "no package":
        url, said = "gs://bucket/sims", "gs:// needs gcsfs: pip install gcsfs"
    else:
        url, said = "nosuch://bucket/sims", "nosuch:// is no storage that fsspec knows"
    for tool, args in (("simgen", ["inspect", url]), ("distill", ["train", "--shards", url, "--teacher", "standin",
                                                                  "--out", "never-written"])):
        r = _cli(tool, *args, env=env)
        assert r.returncode != 0 and said in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
        assert s3_server.secret not in r.stderr and "not-the-secret" not in r.stderr
    assert not os.path.exists("never-written")


@pytest.mark.slow
def test_training_streams_from_the_store_and_writes_no_credential(tmp_path, s3, s3_server, teacher_file):
    remote = write_synthetic_dataset(f"{s3}/sims", n=24, samples_per_shard=8)
    out = tmp_path / "run"
    r = _cli("distill", "train", "--shards", remote, "--teacher", str(teacher_file), "--teacher-input-size",
             str(SIZE), "--out", str(out), "--steps", "4", "--batch-size", "2", "--workers", "1", "--device", "cpu",
             "--quiet")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "config.json").read_text())["shards"] == [remote]
    r = _cli("distill", "eval", "--model", str(out / "student.pt"), "--data", remote, "--split", "all", "--out",
             str(out / "eval"))
    assert r.returncode == 0 and "24 images" in r.stdout, r.stderr
    assert json.loads((out / "eval" / "metrics.json").read_text())["overall"]["abs_rel"] > 0
    for f in out.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert s3_server.secret.encode() not in data and s3_server.key.encode() not in data, f


# ------------------------------------------------------------------ torchrun: two nodes on 127.0.0.1

def _torchrun_nodes(remote: str, teacher, out, port: int, env: dict, *extra: str) -> list[subprocess.Popen]:
    """Both nodes of a two-node torchrun job (c10d rendezvous, gloo on CPU), each its own process group."""
    nodes = []
    for _ in range(2):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", out.name,
               "--local-addr", "127.0.0.1", "--max-restarts", "0",
               "-m", "distill.cli", "train", "--shards", remote, "--teacher", str(teacher), "--teacher-input-size",
               str(SIZE), "--out", str(out), "--steps", "40", "--ckpt-every", "10", "--batch-size", "2", "--workers",
               "0", "--device", "cpu", "--quiet", *extra]
        nodes.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      start_new_session=True))
    return nodes


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return []


@pytest.mark.slow
def test_two_torchrun_nodes_read_disjoint_shards_and_resume_after_a_rank_dies(tmp_path, s3, teacher_file):
    import re
    import signal
    import time

    import torch

    from distill.checkpoint import read_checkpoint
    from simgen.local_s3 import free_port

    remote = write_synthetic_dataset(f"{s3}/sims", n=32, samples_per_shard=4)  # 8 shards
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")  # gloo on the loopback interface only
    whole = _torchrun_nodes(remote, teacher_file, tmp_path / "whole", free_port(), env)
    logs = [p.communicate(timeout=600)[0] for p in whole]
    assert [p.returncode for p in whole] == [0, 0], logs
    read = {int(m[0]): set(m[1].split(", ")) for log in logs
            for m in re.findall(r"data: rank (\d) of 2 reads 4 of 8 shards in epoch 0: (.*)", log)}
    assert sorted(read) == [0, 1] and not read[0] & read[1] and len(read[0] | read[1]) == 8

    killed = tmp_path / "killed"
    nodes = _torchrun_nodes(remote, teacher_file, killed, free_port(), env)
    deadline = time.time() + 300
    while not (killed / "checkpoint.pt").exists():
        assert time.time() < deadline and all(p.poll() is None for p in nodes), "no checkpoint came"
        time.sleep(0.05)
    rank = _children(nodes[1].pid)  # torchrun starts each rank in a session of its own
    assert len(rank) == 1
    os.kill(rank[0], signal.SIGKILL)  # one rank dies mid-run
    try:
        for p in nodes:  # the job stops: the other rank's next collective fails, both agents exit
            p.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        for p in nodes:
            for pid in [*_children(p.pid), p.pid]:
                os.kill(pid, signal.SIGKILL)
        pytest.fail("the job did not stop within 3 minutes of a rank's death")
    assert all(p.returncode != 0 for p in nodes)
    assert not (killed / "student.pt").exists(), "the run finished before the kill; nothing was tested"
    step = read_checkpoint(killed / "checkpoint.pt")["step"]
    assert 10 <= step < 40
    resumed = _torchrun_nodes(remote, teacher_file, killed, free_port(), env, "--resume")
    logs = [p.communicate(timeout=600)[0] for p in resumed]
    assert [p.returncode for p in resumed] == [0, 0], logs
    a, b = (read_checkpoint(run / "student.pt")["model"] for run in (tmp_path / "whole", killed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit for bit the same weights


def test_a_file_url_takes_the_lock_free_protocol(tmp_path):
    """A dataset given as file:// (an NFS folder whose locks cannot be trusted) commits without a lock."""
    root = write_synthetic_dataset(f"file://{tmp_path}/nfs", n=12, samples_per_shard=4)
    assert sorted(p.name for p in (tmp_path / "nfs").iterdir()) == ["commits", "manifest.json", "shards"]
    assert len(list((tmp_path / "nfs" / "commits").glob("*.json"))) == 3
    local = dataset.DatasetReader(tmp_path / "nfs")  # and it reads as a local folder too (consolidated)
    assert len(dataset.DatasetReader(root)) == len(local) == 12 and local.complete


@pytest.mark.parametrize("layout", ["folders", "index.csv"])
def test_real_rgbd_frames_read_from_the_store_equal_the_local_ones(tmp_path, s3, layout):
    import torch
    from PIL import Image

    from distill.data import RGBDFolder

    local = tmp_path / "frames"
    rng = np.random.default_rng(0)
    for sub in ("rgb", "depth"):
        (local / sub).mkdir(parents=True)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(local / "rgb" / f"f{i}.png")
        Image.fromarray(rng.integers(500, 5000, (24, 32)).astype(np.uint16)).save(local / "depth" / f"f{i}.png")
    if layout == "index.csv":
        (local / "index.csv").write_text("rgb,depth,split\n" + "".join(
            f"rgb/f{i}.png,depth/f{i}.png,{'test' if i else 'train'}\n" for i in range(3)))
    fs, path = store.filesystem(f"{s3}/frames")
    fs.put(f"{local}/", path, recursive=True)
    split = "test" if layout == "index.csv" else None
    a, b = RGBDFolder(local, split=split), RGBDFolder(f"{s3}/frames", split=split)
    assert len(a) == len(b) == (2 if split else 3)
    for x, y in zip(a, b):
        assert x["name"] == y["name"] and torch.equal(x["rgb"], y["rgb"]) and torch.equal(x["depth"], y["depth"])


def test_a_store_that_goes_away_mid_read_is_one_line(tmp_path, monkeypatch):
    """A server of its own, stopped after the reader opened the dataset: the next read says what failed."""
    s3fs = pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    from simgen.local_s3 import S3Server

    server = S3Server(tmp_path / "moto.log")
    try:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        s3fs.S3FileSystem.clear_instance_cache()
        reader = dataset.DatasetReader(write_synthetic_dataset(f"s3://{server.bucket()}/sims", n=8, samples_per_shard=4))
    finally:
        server.stop()
    with pytest.raises(store.StoreError, match="the store failed"):
        next(reader.iter_samples())
    s3fs.S3FileSystem.clear_instance_cache()


def test_a_manifest_another_driver_creates_between_read_and_listing_is_checked_not_refused(s3, monkeypatch):
    """Two drivers start at once: one reads no manifest, the other creates it, the first then lists the prefix."""
    from simgen.config import RenderConfig
    from simgen.runner import open_dataset_for_render

    url = store.location(f"{s3}/sims")
    first = open_dataset_for_render(url, RenderConfig(), 0, 4)
    real, calls = shards.load_manifest, []

    def read_just_before_it_landed(root):
        calls.append(root)
        return None if len(calls) == 1 else real(root)

    monkeypatch.setattr(shards, "load_manifest", read_just_before_it_landed)
    assert open_dataset_for_render(url, RenderConfig(), 0, 4)["created"] == first["created"]
    assert len(calls) >= 2
