"""Tiny end-to-end renders through the CLI (needs the render extra; 64x48 pixels, 4 samples/pixel)."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from simgen.runs import sha256_file
from simgen.dataset import DatasetReader
from simgen.worker import MIN_DEPTH_SPREAD, MIN_VALID_FRACTION
from test_assets import CUBE_OBJ, write_library

pytestmark = pytest.mark.render
TINY = ["--resolution", "64x48", "--shard-size", "2", "--views-per-scene", "2", "--quiet"]


def render(out, n, *extra, check=True, env=None):
    r = subprocess.run([sys.executable, "-m", "simgen.cli", "render", "--n", str(n), "--out", str(out), *TINY, *extra],
                       capture_output=True, text=True, timeout=600, env=env)
    if check:
        assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def indoor(tmp_path_factory):
    out = tmp_path_factory.mktemp("render") / "indoor"
    render(out, 4, "--scene", "indoor", "--seed", "5")
    return out


@pytest.mark.parametrize("family", ["indoor", "outdoor"])
def test_each_family_renders_valid_samples(tmp_path, indoor, family):
    out = indoor if family == "indoor" else tmp_path / "outdoor"
    if family == "outdoor":
        render(out, 4, "--scene", "outdoor", "--seed", "5")
    ds = DatasetReader(out)
    assert len(ds) == 4 and len(ds.shards) == 2
    for s in ds.iter_samples():
        assert s.rgb.shape == (48, 64, 3) and s.depth.shape == (48, 64) and s.inst.shape == (48, 64)
        assert s.rgb.std() > 3, "an image, not a flat colour"
        valid = s.depth > 0
        assert valid.mean() > MIN_VALID_FRACTION
        assert s.depth[valid].max() / s.depth[valid].min() > MIN_DEPTH_SPREAD
        ids = set(np.unique(s.inst).tolist()) - {0}
        assert ids and ids == {i["id"] for i in s.meta["instances"]}
        assert s.meta["scene_family"] == family and s.meta["intrinsics"]["width"] == 64
        if family == "outdoor":
            assert (s.depth == 0).any(), "the sky is invalid depth"
            # the sky has no instance: invalid depth there and instance 0 coincide
            assert (s.inst[s.depth == 0] == 0).mean() > 0.9


def test_same_config_and_seed_reproduce_the_same_data_and_leave_no_temp_dirs(tmp_path, indoor):
    again, temp = tmp_path / "again", tmp_path / "temp"
    temp.mkdir()
    render(again, 4, "--scene", "indoor", "--seed", "5", env={**os.environ, "TMPDIR": str(temp)})
    # neither the workers' BlenderProc dirs nor Blender's own session dirs (blender_XXXXXX) stay behind
    assert not list(temp.iterdir())
    a, b = DatasetReader(indoor), DatasetReader(again)
    for sa, sb in zip(a.iter_samples(), b.iter_samples()):
        np.testing.assert_array_equal(sa.depth, sb.depth)
        np.testing.assert_array_equal(sa.inst, sb.inst)
        np.testing.assert_array_equal(sa.rgb, sb.rgb)


def test_inspect_and_preview(tmp_path, indoor):
    r = subprocess.run([sys.executable, "-m", "simgen.cli", "inspect", str(indoor), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["samples"] == 4 and report["bad_shards"] == {} and report["families"] == {"indoor": 4}
    assert 0 < report["depth_m"]["min"] < report["depth_m"]["max"] <= 20
    sheet = tmp_path / "sheet.png"
    r = subprocess.run([sys.executable, "-m", "simgen.cli", "preview", str(indoor), "--out", str(sheet)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and sheet.stat().st_size > 1000


def test_kill_in_the_middle_then_resume_loses_and_duplicates_nothing(tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "simgen.cli", "render", "--n", "6", "--out", str(out), *TINY]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:  # wait for the first committed shard, then kill everything at once
        manifest = out / "manifest.json"
        if manifest.exists() and json.loads(manifest.read_text())["shards"]:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = json.loads((out / "manifest.json").read_text())["shards"]
    assert 1 <= len(committed) < 3
    render(out, 6)
    ds = DatasetReader(out)
    assert [s.index for s in ds.iter_samples()] == list(range(6))
    assert all(ds.verify(r) is None for r in ds.shards)
    assert not list((out / "shards").glob("*.tmp-*"))
    # extending: a larger --n adds shards, the committed ones stay byte for byte
    before = {r["name"]: sha256_file(ds.shard_path(r)) for r in ds.shards}
    render(out, 8)
    ds = DatasetReader(out)
    assert len(ds) == 8 and all(sha256_file(ds.shard_path(r)) == before[r["name"]] for r in ds.shards if r["name"] in before)


def test_a_different_seed_into_the_same_directory_is_refused(indoor):
    before = (indoor / "manifest.json").read_bytes()
    r = render(indoor, 4, "--scene", "indoor", "--seed", "6", check=False)
    assert r.returncode == 2 and "its seed is 5" in r.stderr
    assert (indoor / "manifest.json").read_bytes() == before


def test_user_library_replaces_the_builtin_one(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "cube.obj").write_text(CUBE_OBJ.replace("f 1 2 6 5\n", "f 1 2 6 5\nf 2 3 7 6\nf 3 4 8 7\nf 4 1 5 8\n"))
    from PIL import Image
    Image.new("RGB", (16, 16), (200, 30, 30)).save(lib / "red.png")
    write_library(lib, [
        {"name": f"crate_{p}", "file": "cube.obj", "category": "crate", "placement": p, "family": "indoor",
         "size_m": [0.4, 0.8], "up": "z", "supports": p != "surface"} for p in ("floor", "wall", "surface")],
        textures=[{"name": "red", "file": "red.png"}])
    out = tmp_path / "custom"
    render(out, 2, "--assets", str(lib), "--no-builtin-assets")
    assets = {i["asset"] for s in DatasetReader(out).iter_samples() for i in s.meta["instances"] if i["thing"]}
    assert assets and assets <= {"crate_floor", "crate_wall", "crate_surface"}


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray: pip install -e '.[ray]'")
def test_ray_executor_fills_the_same_layout(tmp_path, indoor):
    from ray_loopback import LOOPBACK_DRIVER_ENV

    out = tmp_path / "ray"  # the local Ray instance on 127.0.0.1, not on the machine's outward address
    render(out, 4, "--scene", "indoor", "--seed", "5", "--executor", "ray", "--threads", "1",
           env=dict(os.environ, **LOOPBACK_DRIVER_ENV))
    a, b = DatasetReader(indoor), DatasetReader(out)
    assert [r["sha256"] for r in a.shards] == [r["sha256"] for r in b.shards]


def test_the_readme_main_job_runs_end_to_end(tmp_path):
    """scripts/demo.py (the README's first command) at toy size: checked stand-in teacher, render, distill, eval,
    report."""
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "scripts/demo.py", "--out", str(out), "--steps", "2", "--resolution", "64x48",
                        "--n-sim", "8", "--n-test", "4", "--quiet"], capture_output=True, text=True,
                       timeout=900, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "sha256 verified" in r.stdout
    assert r.stdout.count("--student resnet10 --init-student teacher") == 2  # both students
    assert r.stdout.count("--w-feature 10 ") == 2  # both students, hints included
    report = (out / "report.md").read_text()
    assert "| student (resnet10, from the teacher, distilled) |" in report and "| teacher (stand-in, ResNet-18) |" in report
    assert "| student before distillation (the teacher's first blocks) |" in report
    assert "| student, plain KD on the same sims |" in report and "a speed-up of" in report
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics) == 4 and all(0 < m["none"]["abs_rel"] < 10 and m["cpu_ms"] > 0 for m in metrics.values())
    assert (out / "grid.png").exists()


def test_the_demo_refuses_teacher_bn_for_a_random_student(tmp_path):
    r = subprocess.run([sys.executable, "scripts/demo.py", "--out", str(tmp_path / "demo"), "--init-student", "random",
                        "--w-feature", "0", "--student-bn", "teacher"], capture_output=True, text=True, timeout=300,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 2 and "--student-bn teacher keeps the statistics" in r.stderr
    assert not (tmp_path / "demo").exists()


def test_the_demo_refuses_feature_hints_a_student_cannot_take_before_rendering(tmp_path):
    r = subprocess.run([sys.executable, "scripts/demo.py", "--out", str(tmp_path / "demo"), "--student", "mobilenetv2",
                        "--init-student", "random"], capture_output=True, text=True, timeout=300,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 1 and "demo: --w-feature: the student's encoder features" in r.stderr
    assert not (tmp_path / "demo").exists()


def test_ctrl_c_leaves_no_temporary_folders_behind(tmp_path):
    """D10 (issue 43): Ctrl-C or a failing render worker left TMPDIR/simgen-bproc-*/blender_* behind (3 of 3
    SIGINTs did): pool.terminate() kills a worker, whose only cleanup was an atexit handler. The runner owns the
    workers' scratch folder and removes it however they end."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    cmd = [sys.executable, "-m", "simgen.cli", "render", "--n", "8", "--out", str(tmp_path / "out"), *TINY]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, "TMPDIR": str(temp)})
    deadline = time.time() + 300
    while time.time() < deadline and not list(temp.glob("simgen-render-*/simgen-bproc-*")):
        time.sleep(0.05)  # a worker has made its BlenderProc folder: interrupt it now
    assert list(temp.glob("simgen-render-*/simgen-bproc-*")), "no worker started"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err.decode()
    assert not list(temp.iterdir())
