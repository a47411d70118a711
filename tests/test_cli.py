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
    (["--n", "4", "--camera", "gopro"], "--camera: invalid choice: 'gopro'"),
    (["--n", "4", "--scene", "space"], "--scene: invalid choice: 'space'"),
    (["--n", "4", "--resolution", "240x320"], "sizes are WIDTHxHEIGHT; the camera is 640x480, so did you mean 320x240?"),
    (["--n", "4", "--resolution", "100000x100000"], "each side must be within 8 to 8192 pixels"),
    (["--n", "4", "--camera", "kitti", "--intrinsics", "500,500,320,240,640,480"], "either --camera or --intrinsics"),
    (["--n", "4", "--max-depth", "0"], "--max-depth-m must be positive"),
    (["--n", "4", "--resolution", "big"], "--resolution must look like 320x240"),
    (["--n", "4", "--profile", "ultra"], "--profile: invalid choice: 'ultra'"),
    (["--n", "4", "--intrinsics", "1,2,3"], "--intrinsics must be fx,fy,cx,cy,W,H"),
    (["--n", "4", "--shard-range", "5:2"], "needs 0 <= FIRST < END"),
    (["--n", "4", "--rooms", "attic"], "--rooms: invalid choice: 'attic'"),
    (["--n", "4", "--materials", "shiny"], "--materials: invalid choice: 'shiny'"),
    (["--n", "4", "--viewpoint", "drone"], "--viewpoint: invalid choice: 'drone'"),
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


def test_inspect_max_samples_must_be_positive(synthetic_shards):
    for bad in ("0", "-1"):
        r = run(["inspect", str(synthetic_shards), "--max-samples", bad])
        assert r.returncode == 2 and "--max-samples: must be positive" in r.stderr
    r = run(["inspect", str(synthetic_shards), "--max-samples", "5"])
    assert r.returncode == 0 and "statistics from 5 of 24 samples" in r.stdout


def test_inspect_and_preview_of_a_non_dataset(tmp_path):
    r = run(["inspect", str(tmp_path)])
    assert r.returncode == 2 and "not a simgen dataset" in r.stderr
    r = run(["preview", str(tmp_path), "--out", str(tmp_path / "s.png")])
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_inspect_and_preview_of_a_dataset_written_without_the_renderer(synthetic_shards, tmp_path):
    """Any valid dataset (here simgen.synthetic's, made by DatasetWriter) can be inspected and previewed."""
    r = run(["inspect", str(synthetic_shards)])
    assert r.returncode == 0, r.stderr
    assert "24 committed of 24 requested, in 3 shards" in r.stdout and "synthetic=True" in r.stdout
    assert "checksums ok" in r.stdout
    r = run(["preview", str(synthetic_shards), "--out", str(tmp_path / "s.png"), "--count", "4"])
    assert r.returncode == 0 and (tmp_path / "s.png").exists(), r.stderr


def test_render_flags_build_the_same_config_as_the_api():
    """The CLI's defaults are RenderConfig's: no flag given = RenderConfig()."""
    from simgen.cli import parse_render_config as parse
    from simgen.config import RenderConfig

    assert parse(["--n", "4", "--out", "o"]) == RenderConfig()
    cfg = parse(["--n", "4", "--out", "o", "--intrinsics", "500,500,160,120,320,240", "--shard-size", "8"])
    assert cfg.camera == "custom" and cfg.resolution is None and cfg.samples_per_shard == 8
    assert cfg.resolved_intrinsics().width == 320  # the intrinsics' own size, not the default resolution
    cfg = parse(["--n", "4", "--out", "o", "--rooms", "kitchen", "--rooms", "office", "--materials", "random",
                 "--viewpoint", "tabletop", "--no-builtin-assets", "--assets", "lib"])
    assert cfg.builtin_assets is False and len(cfg.assets) == 1
    assert (cfg.rooms, cfg.materials, cfg.viewpoint) == (["kitchen", "office"], "random", "tabletop")
