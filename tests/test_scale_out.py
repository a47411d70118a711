"""Rendering beyond one machine (docs/scale-out.md): renders into a local S3 server (moto, 127.0.0.1) equal a
local render byte for byte, survive kill -9 of the driver and its workers, merge when two drivers share a
prefix, and run on a real two-node Ray cluster on 127.0.0.1 whose worker node dies mid-run."""

import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simgen import shards, store
from simgen.dataset import DatasetReader

pytestmark = pytest.mark.render

TINY = ["--resolution", "64x48", "--shard-size", "2", "--views-per-scene", "2", "--seed", "7", "--quiet"]
N = 16  # 8 shards
SHARDS = [shards.shard_name(k) for k in range(N // 2)]


def _render(out: str, *extra: str, n: int = N) -> list[str]:
    return [sys.executable, "-m", "simgen.cli", "render", "--n", str(n), "--out", out, *TINY, *extra]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same dataset rendered into a local folder: {shard name: bytes}."""
    out = tmp_path_factory.mktemp("reference") / "ds"
    r = subprocess.run(_render(str(out), "--workers", "2"), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    return {name: (out / "shards" / name).read_bytes() for name in SHARDS}


def _committed(url: str) -> dict[str, dict]:
    """The commit records at a URL dataset, by shard name."""
    return {r["name"]: r for r in shards.commit_records(url)}


def _assert_equals_reference(url: str, reference: dict[str, bytes]) -> None:
    records = _committed(url)
    assert sorted(records) == SHARDS
    for name in SHARDS:
        assert store.read_bytes(f"{url}/shards/{name}") == reference[name], name
        assert records[name]["sha256"] == store.sha256(f"{url}/shards/{name}")
    manifest = json.loads(store.read_bytes(f"{url}/manifest.json"))  # consolidated by the driver that finished
    assert sorted(manifest["shards"]) == SHARDS and manifest["n"] == N


def _wait_for(condition, timeout: float = 300, what: str = "") -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_render_into_the_store_survives_kill_9_and_equals_the_local_render(s3, reference):
    url = f"{s3}/sims"
    proc = subprocess.Popen(_render(url, "--workers", "2"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    _wait_for(lambda: len(_committed(url)) >= 2, what="two committed shards")
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and both workers at once, mid-run
    proc.wait()
    assert 2 <= len(_committed(url)) < len(SHARDS)
    r = subprocess.run(_render(url, "--workers", "2"), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    _assert_equals_reference(url, reference)


def test_two_drivers_on_one_prefix_merge_without_losing_or_duplicating(s3, reference):
    url = f"{s3}/sims"
    procs = [subprocess.Popen(_render(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    _assert_equals_reference(url, reference)
    keys = [s.key for s in DatasetReader(url).iter_samples()]
    assert keys == [f"{i:09d}" for i in range(N)]  # every sample once


# ------------------------------------------------------------------------------ a two-node Ray cluster

RAY = [sys.executable, str(Path(__file__).with_name("ray_loopback.py"))]  # `ray`, with its nodes on 127.0.0.1


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray: pip install -e '.[ray]'")
def test_a_two_node_ray_cluster_renders_into_the_store_and_survives_losing_a_node(tmp_path, s3, s3_server, reference):
    from simgen.local_s3 import free_port
    from ray_loopback import LOOPBACK_DRIVER_ENV

    port, url = free_port(), f"{s3}/sims"
    # token authentication, as Ray sets up a new cluster by default: every node and the driver hold the token
    token = tmp_path / "ray-token"
    token.write_text(secrets.token_hex(32))
    env = dict(os.environ, **s3_server.env(), RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN_PATH=str(token))
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats", "--block"]
    nodes: list[subprocess.Popen] = []

    def start_node(*args: str) -> subprocess.Popen:  # a node in a process group of its own: killpg ends it all
        nodes.append(subprocess.Popen([*RAY, "start", *args, *common], env=env, stdout=open(
            tmp_path / f"node-{len(nodes)}.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True))
        return nodes[-1]

    try:
        start_node("--head", "--port", str(port), "--include-dashboard", "false")
        _wait_for(lambda: _answers(port), timeout=120, what="the head node")
        worker = start_node("--address", f"127.0.0.1:{port}")
        driver = subprocess.Popen(_render(url, "--executor", "ray", "--ray-address", f"127.0.0.1:{port}",
                                          "--threads", "1"), env=dict(env, **LOOPBACK_DRIVER_ENV),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        rendered_on = lambda: {r["rendered_by"]["ray_node"] for r in _committed(url).values()}  # noqa: E731
        _wait_for(lambda: len(rendered_on()) == 2 or driver.poll() is not None, timeout=600, what="both nodes")
        assert len(rendered_on()) == 2, driver.communicate()  # both nodes rendered
        assert driver.poll() is None and len(_committed(url)) < len(SHARDS)  # ... and the run is not over
        os.killpg(worker.pid, signal.SIGKILL)  # the worker node dies mid-run
        _, err = driver.communicate(timeout=600)
        assert driver.returncode == 0, err
        _assert_equals_reference(url, reference)
    finally:
        for node in nodes:  # every process of both nodes (not other Ray instances on this machine)
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
            node.wait()


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
