"""Bad input: one clear line, a non-zero exit, no traceback, nothing lost."""

import json
import subprocess
import sys

import pytest

from simgen import bootstrap
from simgen.cli import main


def run(args, cwd=None):
    return subprocess.run([sys.executable, "-m", "simgen.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("args, message", [
    (["--n", "0"], "--n: must be positive"),
    (["--n", "ten"], "--n: must be a whole number"),
    (["--n", "4", "--camera", "gopro"], "unknown camera preset 'gopro'"),
    (["--n", "4", "--scene", "space"], "unknown scene family 'space'"),
    (["--n", "4", "--resolution", "big"], "--resolution must look like 320x240"),
    (["--n", "4", "--profile", "ultra"], "unknown render profile 'ultra'"),
    (["--n", "4", "--intrinsics", "1,2,3"], "--intrinsics must be fx,fy,cx,cy,W,H"),
    (["--n", "4", "--shard-range", "5:2"], "needs 0 <= FIRST < END"),
])
def test_bad_flags_give_one_clear_line(tmp_path, args, message):
    r = run(["render", "--out", str(tmp_path / "out"), *args])
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_broken_asset_library_is_refused_before_rendering(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "library.json").write_text(json.dumps({"format": "simgen-assets", "version": 1, "meshes": [
        {"name": "x", "file": "nope.obj", "category": "box", "placement": "floor", "family": "indoor", "scale": 1}]}))
    r = run(["render", "--n", "4", "--out", str(tmp_path / "out"), "--assets", str(lib)])
    assert r.returncode == 2 and "nope.obj: mesh file missing" in r.stderr and "Traceback" not in r.stderr
    r = run(["assets", "check", str(lib)])
    assert r.returncode == 1 and "fix:" in r.stdout


def test_foreign_out_directory_keeps_its_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    r = run(["render", "--n", "4", "--out", str(tmp_path)])
    assert r.returncode == 2 and "holds no simgen dataset" in r.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_missing_bpy_and_wrong_python_are_explained(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bpy" else real(name, *a))
    with pytest.raises(bootstrap.BlenderUnavailable, match=r"`bpy` is not installed; install the render extra"):
        bootstrap.check_render_environment()
    monkeypatch.setattr(sys, "version_info", (3, 12, 0))
    with pytest.raises(bootstrap.BlenderUnavailable, match="needs Python 3.11"):
        bootstrap.check_render_environment()


def test_missing_bpy_through_the_cli(monkeypatch, tmp_path, capsys):
    def unavailable():
        raise bootstrap.BlenderUnavailable("`bpy` is not installed; install the render extra")
    monkeypatch.setattr(bootstrap, "check_render_environment", unavailable)
    assert main(["render", "--n", "2", "--out", str(tmp_path / "o")]) == 2
    assert "simgen: error: `bpy` is not installed" in capsys.readouterr().err


def test_inspect_and_preview_of_a_non_dataset(tmp_path):
    r = run(["inspect", str(tmp_path)])
    assert r.returncode == 2 and "not a simgen dataset" in r.stderr
    r = run(["preview", str(tmp_path), "--out", str(tmp_path / "s.png")])
    assert r.returncode == 2 and "Traceback" not in r.stderr
