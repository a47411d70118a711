"""distill eval / export / mix-preview through the CLI, and its bad-input messages."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SIZE
from distill.checkpoint import save_checkpoint
from distill.evaluate import evaluate_alignments, evaluate_model
from distill.networks import build_depth_model
from simgen.options import Size


def run(*args):
    return subprocess.run([sys.executable, "-m", "distill.cli", *args], capture_output=True, text=True, timeout=600)


class ConstantDepth(torch.nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x):
        return torch.full((x.shape[0], 1, *x.shape[-2:]), self.value)


@pytest.fixture
def rgbd_folder(tmp_path):
    """An index.csv folder like shared/data/rgbd-indoor: two scenes, train/test, depth in mm."""
    root = tmp_path / "rgbd"
    rows = []
    for scene, depth_m in (("kitchen", 2.0), ("corridor", 4.0)):
        (root / scene / "rgb").mkdir(parents=True)
        (root / scene / "depth").mkdir(parents=True)
        for i, split in enumerate(["train", "test", "test"]):
            Image.fromarray(np.full((48, 64, 3), 100 + 40 * i, np.uint8)).save(root / scene / "rgb" / f"{i:06d}.jpg")
            depth = np.full((48, 64), depth_m * 1000, np.uint16)
            depth[:4] = 0  # invalid rows
            Image.fromarray(depth).save(root / scene / "depth" / f"{i:06d}.png")
            rows.append({"scene": scene, "split": split, "order": i, "rgb": f"{scene}/rgb/{i:06d}.jpg",
                         "depth": f"{scene}/depth/{i:06d}.png", "sensor": "test"})
    with open(root / "index.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def test_metrics_per_scene_and_alignment(rgbd_folder, tmp_path):
    r = evaluate_model(ConstantDepth(2.0), rgbd_folder, Size(64, 32), torch.device("cpu"), protocol="none",
                       align="none", split="test", grid_path=tmp_path / "grid.png")
    assert r["images"] == 4
    assert r["per_scene"]["kitchen"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert r["per_scene"]["corridor"]["abs_rel"] == pytest.approx(0.5, abs=1e-6)  # 2 m against 4 m
    assert r["overall"]["abs_rel"] == pytest.approx(0.25, abs=1e-6)
    assert r["per_scene"]["corridor"]["a1"] == 0.0
    median = evaluate_model(ConstantDepth(2.0), rgbd_folder, Size(64, 32), torch.device("cpu"), protocol="none",
                            align="median", split="test")
    assert median["overall"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert (tmp_path / "grid.png").exists()


def test_several_alignments_share_one_prediction_per_frame(rgbd_folder):
    class Counting(ConstantDepth):
        calls = 0

        def forward(self, x):
            Counting.calls += x.shape[0]
            return super().forward(x)

    both = evaluate_alignments(Counting(3.0), rgbd_folder, Size(64, 32), torch.device("cpu"), ("none", "median"),
                               protocol="none", split="test")
    assert Counting.calls == 4  # four test frames, each predicted once for both alignments
    for align in ("none", "median"):
        alone = evaluate_model(ConstantDepth(3.0), rgbd_folder, Size(64, 32), torch.device("cpu"), protocol="none",
                               align=align, split="test")
        assert both[align]["overall"] == alone["overall"] and both[align]["align"] == align
    assert both["median"]["overall"]["abs_rel"] < both["none"]["overall"]["abs_rel"]


def test_batched_evaluation_gives_each_frame_its_own_metrics(tmp_path):
    """Frames are predicted in batches of one size (a new size starts a new batch); every frame's
    metrics are the ones it gets alone."""
    root, rng, rows = tmp_path / "mixed", np.random.default_rng(0), []
    for scene, (h, w) in (("small", (48, 64)), ("large", (60, 80))):
        for d in ("rgb", "depth"):
            (root / scene / d).mkdir(parents=True)
        for i in range(4 if scene == "small" else 3):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / scene / "rgb" / f"{i}.png")
            Image.fromarray(rng.integers(500, 5000, (h, w)).astype(np.uint16)).save(root / scene / "depth" / f"{i}.png")
            rows.append({"scene": scene, "split": "test", "order": i, "rgb": f"{scene}/rgb/{i}.png",
                         "depth": f"{scene}/depth/{i}.png", "sensor": "test"})
    with open(root / "index.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    class Recording(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net, self.batches = build_depth_model("mobilenetv2", 0.1, 10.0), []

        def forward(self, x):
            self.batches.append(x.shape[0])
            return self.net(x)

    model = Recording()
    args = (model, root, Size(64, 32), torch.device("cpu"), ("none", "median"))
    batched = evaluate_alignments(*args, protocol="none", precision="fp32", batch_size=3)
    assert model.batches == [3, 1, 3]  # 4 small frames: 3 + 1; then the 3 large ones
    model.batches = []
    alone = evaluate_alignments(*args, protocol="none", precision="fp32", batch_size=1)
    assert model.batches == [1] * 7
    for align in ("none", "median"):
        for a, b in zip(batched[align]["per_image"], alone[align]["per_image"], strict=True):
            assert a["name"] == b["name"] and a["abs_rel"] == pytest.approx(b["abs_rel"], rel=1e-4)


@pytest.mark.slow
def test_eval_export_and_reeval_through_the_cli(rgbd_folder, tmp_path):
    model = build_depth_model("mobilenetv2", 0.1, 10.0)
    ckpt = tmp_path / "student.pt"
    save_checkpoint(ckpt, model, "mobilenetv2", Size(64, 32), 0.1, 10.0)
    # Without alignment: an untrained model is far off (AbsRel near 1), so the exported model's
    # AbsRel is compared at a scale where float noise does not matter (median-aligned, these flat
    # frames give AbsRel ~3e-5, whose 4th digit is noise).
    # fp32 on every machine (auto is bf16 where the CPU has it): the two evaluations compare numerics
    r = run("eval", "--model", str(ckpt), "--data", str(rgbd_folder), "--protocol", "nyu", "--precision", "fp32",
            "--out", str(tmp_path / "ev"))
    assert r.returncode == 0, r.stderr
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["align"] == "none" and set(metrics["per_scene"]) == {"kitchen", "corridor"}
    assert metrics["overall"]["abs_rel"] > 0.1
    for fmt, name in (("torchscript", "student.ts"), ("onnx", "student.onnx")):
        r = run("export", "--model", str(ckpt), "--format", fmt, "--out", str(tmp_path / name))
        assert r.returncode == 0, r.stderr
        spec = json.loads((tmp_path / f"{name}.json").read_text())
        assert spec["max_abs_diff"] < 1e-3
        assert spec["input"]["shape"] == (["B", 3, "H", "W"] if fmt == "onnx" else ["B", 3, 32, 64])
    r = run("eval", "--model", str(tmp_path / "student.ts"), "--data", str(rgbd_folder), "--protocol", "nyu",
            "--precision", "fp32", "--out", str(tmp_path / "ev2"))
    assert r.returncode == 0, r.stderr
    again = json.loads((tmp_path / "ev2" / "metrics.json").read_text())
    assert again["overall"]["abs_rel"] == pytest.approx(metrics["overall"]["abs_rel"], rel=1e-4)
    r = run("eval", "--model", str(tmp_path / "student.ts"), "--data", str(rgbd_folder), "--protocol", "nyu",
            "--align", "median", "--out", str(tmp_path / "ev3"))
    assert r.returncode == 0, r.stderr
    aligned = json.loads((tmp_path / "ev3" / "metrics.json").read_text())
    assert aligned["align"] == "median" and "alignment median" in r.stdout
    assert aligned["overall"]["abs_rel"] < 0.01  # flat frames: the median scale alone makes them right


def test_mix_preview_picture(synthetic_shards, tmp_path):
    r = run("mix-preview", "--shards", str(synthetic_shards), "--out", str(tmp_path / "mix.png"), "--size", "64x32",
            "--count", "4")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "mix.png").size == (4 * 64, 4 * 32)


def test_corrupt_shard_is_named(synthetic_shards, teacher_file, tmp_path):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(synthetic_shards, broken)
    shard = sorted((broken / "shards").glob("*.tar"))[1]
    shard.write_bytes(shard.read_bytes()[:5000])
    from distill.data import ShardStream
    from simgen.shards import ShardError
    with pytest.raises(ShardError, match=r"shard-000001\.tar: checksum mismatch.*repair"):
        list(ShardStream([broken], SIZE.hw, augment=False, epochs=1))
    # through the CLI, with a teacher that loads: the one-line error names the shard
    r = run("train", "--shards", str(broken), "--teacher", str(teacher_file), "--out", str(tmp_path / "r"),
            "--steps", "40", "--workers", "0", "--device", "cpu", "--quiet")
    assert r.returncode == 2 and "shard-000001.tar" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_a_shard_listed_but_missing_is_named_by_the_training_reader(synthetic_shards, tmp_path):
    import shutil
    ds = tmp_path / "ds"
    shutil.copytree(synthetic_shards, ds)
    (ds / "shards" / "shard-000002.tar").unlink()
    from distill.data import ShardStream
    from simgen.shards import ShardError
    with pytest.raises(ShardError, match=r"shard-000002\.tar: listed in the manifest but missing"):
        list(ShardStream([ds], SIZE.hw, augment=False, epochs=1))


@pytest.mark.parametrize("args, message", [
    (["train", "--shards", "/nonexistent", "--teacher", "x.pt", "--out", "o"], "/nonexistent: no manifest.json"),
    (["train", "--teacher", "x.pt", "--out", "o"], "required: --shards"),
    (["train", "--shards", "s", "--teacher", "t", "--steps", "0"], "--steps must be at least 1"),
    (["eval", "--model", "m.pt", "--data", ".", "--input-size", "big"], "must be WIDTHxHEIGHT"),
    (["eval", "--model", "/nonexistent.pt", "--data", "."], "--model /nonexistent.pt: no such file"),
    (["fit-teacher", "--data", "/nonexistent", "--out", "t.ckpt"], "expected rgb/ and depth/ folders"),
    (["train", "--shards", "s", "--teacher", "t", "--out", "o", "--mixing", "maybe"], "must be on or off"),
])
def test_bad_input_gives_one_clear_line(tmp_path, args, message):
    r = subprocess.run([sys.executable, "-m", "distill.cli", *args], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_missing_teacher_is_named(tmp_path, synthetic_shards):
    r = run("train", "--shards", str(synthetic_shards), "--teacher", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and f"--teacher {tmp_path / 'nope.pt'}: no such file" in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


def test_an_unexpected_error_keeps_its_traceback(tmp_path, monkeypatch):
    """Only the project's own errors become one line: a bug elsewhere shows where it happened."""
    import distill.cli as cli

    def broken(*args, **kwargs):
        raise RuntimeError("shape mismatch deep inside torch")

    monkeypatch.setattr(cli, "_load_model_flag", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        cli.main(["export", "--model", "m.pt", "--format", "onnx", "--out", "x.onnx"])


def test_a_version_1_checkpoint_still_loads_with_its_size_read_as_height_width(tmp_path):
    from distill.checkpoint import load_model

    model = build_depth_model("mobilenetv2", 0.1, 10.0)
    torch.save({"model_arch": "mobilenetv2", "model": model.state_dict(), "input_size": [32, 64],
                "model_range": {"min_depth": 0.1, "max_depth": 10.0}}, tmp_path / "old.pt")
    loaded, info = load_model(tmp_path / "old.pt")
    assert info.input_size == Size(64, 32) and info.arch == "mobilenetv2"
    x = torch.rand(1, 3, 32, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))


def _rgb_depth_folder(root, frames):
    """rgb/ + depth/ folder; frames: (name, rgb HxWx3 uint8, depth array) triples."""
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    for name, rgb, depth in frames:
        Image.fromarray(rgb).save(root / "rgb" / f"{name}.png")
        Image.fromarray(depth).save(root / "depth" / f"{name}.png")
    return root


def test_an_8_bit_depth_png_is_refused_with_the_fix(tmp_path):
    from distill.data import DataError, RGBDFolder

    root = _rgb_depth_folder(tmp_path / "d", [("a", np.zeros((8, 8, 3), np.uint8), np.full((8, 8), 200, np.uint8))])
    with pytest.raises(DataError, match="uint8 depth image.*16-bit PNG.*--depth-scale"):
        RGBDFolder(root)[0]


def test_frames_of_other_sizes_and_rgb_depth_size_mismatch_are_evaluated_at_the_depths_size(tmp_path):
    """KITTI-like: frames differ in size, and one frame's depth is half its RGB's size."""
    depth_a = np.full((48, 64), 2000, np.uint16)
    depth_b = np.full((20, 80), 2000, np.uint16)
    depth_c = np.full((24, 32), 2000, np.uint16)
    root = _rgb_depth_folder(tmp_path / "d", [("a", np.zeros((48, 64, 3), np.uint8), depth_a),
                                               ("b", np.zeros((20, 80, 3), np.uint8), depth_b),
                                               ("c", np.zeros((48, 64, 3), np.uint8), depth_c)])
    r = evaluate_model(ConstantDepth(2.0), root, Size(64, 32), torch.device("cpu"), protocol="none", split=None,
                       grid_path=tmp_path / "grid.png")
    assert r["images"] == 3 and r["overall"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert Image.open(tmp_path / "grid.png").size[1] == 3 * (48 + 4)  # every row scaled to the first's height


def test_exporting_an_exported_model_and_bad_out_paths_are_one_line(tmp_path):
    model = build_depth_model("mobilenetv2", 0.1, 10.0)
    save_checkpoint(tmp_path / "s.pt", model, "mobilenetv2", Size(64, 32), 0.1, 10.0)
    import distill.cli as cli
    assert cli.main(["export", "--model", str(tmp_path / "s.pt"), "--format", "torchscript", "--out",
                     str(tmp_path / "s.ts")]) == 0
    assert cli.main(["export", "--model", str(tmp_path / "s.ts"), "--format", "onnx", "--out", str(tmp_path / "x.onnx")]) == 2
    assert cli.main(["export", "--model", str(tmp_path / "s.pt"), "--format", "onnx", "--out", str(tmp_path)]) == 2
    (tmp_path / "afile").write_text("")
    assert cli.main(["eval", "--model", str(tmp_path / "s.pt"), "--data", str(tmp_path), "--out",
                     str(tmp_path / "afile")]) == 2
    assert cli.main(["fit-teacher", "--data", str(tmp_path), "--out", str(tmp_path)]) == 2


@pytest.mark.parametrize("argv, message", [
    (["mix-preview", "--shards", "s", "--out", "mixed", "--count", "2"], "must be a .png file name"),
    (["mix-preview", "--shards", "s", "--out", "m.png", "--count", "0"], "must be positive"),
    (["eval", "--model", "m.pt", "--data", ".", "--device", "cuda:7"], None),
])
def test_more_bad_flags(tmp_path, capsys, argv, message):
    import distill.cli as cli
    import torch as _torch

    if message is None:  # a CUDA device this torch cannot see
        if _torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        model = build_depth_model("mobilenetv2", 0.1, 10.0)
        save_checkpoint(tmp_path / "m.pt", model, "mobilenetv2", Size(64, 32), 0.1, 10.0)
        argv = [a if a != "m.pt" else str(tmp_path / "m.pt") for a in argv]
        message = "sees no CUDA device"
    try:
        rc = cli.main(argv)
    except SystemExit as e:
        rc = e.code
    assert rc == 2 and message in capsys.readouterr().err
