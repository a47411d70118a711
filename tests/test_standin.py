"""The shipped stand-in teacher: intact, loadable the way a user's teacher is, and remade by its script."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, SIZE
from distill.checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint
from distill.compare import comparison_grid
from distill.networks import build_depth_model
from distill.standin import STANDIN_CARD, STANDIN_CKPT, verify_standin, write_compact
from distill.teacher import TeacherSpec, load_teacher
from simgen.options import Size


def test_the_shipped_teacher_is_intact_small_and_documented():
    card = verify_standin()
    assert STANDIN_CKPT.stat().st_size <= 25e6
    assert (STANDIN_CKPT.parent / "LICENSE.md").read_text().count("Trained on") == 1
    teacher = load_teacher(TeacherSpec(source=str(STANDIN_CKPT)))  # the path `distill train --teacher` takes
    assert tuple(teacher.spec.input_size) == tuple(card["input_size"])


def test_a_damaged_or_missing_stand_in_is_refused(tmp_path):
    bad, card = tmp_path / STANDIN_CKPT.name, tmp_path / STANDIN_CARD.name
    shutil.copy(STANDIN_CARD, card)
    data = bytearray(STANDIN_CKPT.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: torch would still load most such files
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        verify_standin(bad, card)
    with pytest.raises(CheckpointError, match="missing"):
        verify_standin(tmp_path / "none.ckpt", card)


def test_the_compact_copy_halves_the_file_and_predicts_the_same(tmp_path):
    torch.manual_seed(0)
    model = build_depth_model("mobilenetv2")
    full, small = tmp_path / "full.ckpt", tmp_path / "small.ckpt"
    save_checkpoint(full, model, "mobilenetv2", SIZE, 0.1, 10.0, fit_config={"steps": 3})
    write_compact(full, small)
    assert small.stat().st_size < 0.6 * full.stat().st_size
    ckpt = read_checkpoint(small)
    assert ckpt["fit_config"] == {"steps": 3}
    assert {v.dtype for v in ckpt["model"].values() if v.is_floating_point()} == {torch.float16}
    x = torch.rand(2, 3, *SIZE.hw)
    a, b = load_model(full)[0](x), load_model(small)[0](x)
    assert b.dtype == torch.float32 and torch.allclose(a, b, rtol=2e-2)


def test_the_comparison_grid_has_a_column_per_model(tmp_path, synthetic_shards):
    torch.manual_seed(0)
    paths = {}
    for name in ("teacher", "student"):
        paths[name] = tmp_path / f"{name}.ckpt"
        save_checkpoint(paths[name], build_depth_model("mobilenetv2"), "mobilenetv2", SIZE, 0.1, 10.0)
    comparison_grid(paths, synthetic_shards, SIZE, tmp_path / "grid.png", count=3)
    from PIL import Image

    from distill.data import RGBDFolder

    h, w = RGBDFolder(synthetic_shards, 1000.0)[0]["depth"].shape[-2:]
    grid = Image.open(tmp_path / "grid.png")
    # RGB | ground truth | teacher | student | student's error, each tile framed by 2 px; 3 rows under a title band
    assert grid.size == (5 * (w + 4), 14 + 3 * (h + 4))


@pytest.mark.render
def test_the_cards_metrics_are_reproduced_on_its_held_out_frames(tmp_path):
    from distill.compare import measure_model
    from distill.standin import RENDER_ARGS, RESOLUTION, TEST_SEED
    from simgen.cli import main as simgen

    card = verify_standin()
    test = tmp_path / "test"
    assert simgen(["render", "--n", str(card["test"]["frames"]), "--out", str(test), "--seed", str(TEST_SEED),
                   "--samples-per-shard", "16", "--resolution", RESOLUTION, *RENDER_ARGS, "--quiet"]) == 0
    row = measure_model(STANDIN_CKPT, test, Size(*card["input_size"]), protocol="none", split=None,
                        latency=False)
    for align, metrics in card["test"]["metrics"].items():
        got = row["eval"][align]["overall"]
        # bf16 on a CPU that has it, fp32 elsewhere: a little apart, far closer than any model change
        assert got["abs_rel"] == pytest.approx(metrics["abs_rel"], abs=0.01)
        assert got["rmse"] == pytest.approx(metrics["rmse"], abs=0.02)


@pytest.mark.render
def test_make_teacher_writes_a_verifiable_card_and_keeps_an_existing_file(tmp_path):
    dest = tmp_path / "teacher" / "t.ckpt"
    cmd = [sys.executable, "scripts/make_teacher.py", "--work", str(tmp_path / "work"), "--frames", "4", "--n-test", "2",
           "--steps", "2", "--batch-size", "2", "--workers", "1", "--dest", str(dest)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    card = json.loads((dest.parent / "teacher.json").read_text())
    assert verify_standin(dest, dest.parent / "teacher.json") == card
    assert card["params"] > 1e6 and 0 < card["test"]["metrics"]["none"]["abs_rel"] < 10
    assert "make_teacher.py" in card["command"] and "--steps 2" in card["fit_command"]
    before = dest.read_bytes()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 2 and "--replace" in r.stderr and dest.read_bytes() == before
