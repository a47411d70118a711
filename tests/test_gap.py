"""`distill gap` and the image statistics it prints."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import distill.cli as cli
from conftest import SIZE
from distill.data import first_samples
from distill.gap import depth_errors
from distill.teacher import Teacher, TeacherSpec
from simgen.imagestats import channel_stats, noise_sigma
from test_teacher_kinds import Fixed
from test_teachers import export, small_bn_depth_model


def test_noise_sigma_finds_white_noise_and_ignores_smooth_content():
    rng = np.random.default_rng(0)
    flat = np.full((120, 160, 3), 128.0)
    noisy = np.clip(flat + rng.normal(0, 4.0, (120, 160, 1)), 0, 255).astype(np.uint8)
    assert noise_sigma(noisy) == pytest.approx(4.0, rel=0.1)
    ramp = np.broadcast_to(np.linspace(0, 1, 160)[None, :, None], (120, 160, 3))  # floats in [0, 1]
    assert noise_sigma(ramp) < 0.01
    assert noise_sigma((ramp * 255).astype(np.uint8)) < 0.5  # only the rounding
    stats = channel_stats(np.stack([flat.astype(np.uint8)] * 2))
    assert stats["mean"] == pytest.approx([128 / 255] * 3, abs=1e-3) and stats["contrast"] == [0.0] * 3


def test_depth_errors_align_each_kind_of_teacher_as_documented():
    torch.manual_seed(0)
    gt = torch.rand(2, 1, *SIZE.hw) * 4 + 0.5
    metric = Teacher(Fixed(gt[:1]), TeacherSpec(input_size=SIZE))
    errors = depth_errors(metric, gt * 1.1, gt)
    assert errors["none"]["abs_rel"] == pytest.approx(0.1, abs=1e-4) and errors["median"]["abs_rel"] < 1e-4
    relative = Teacher(Fixed(gt[:1]), TeacherSpec(input_size=SIZE, output="relative"))
    errors = depth_errors(relative, 3.0 / gt + 1.0, gt)  # inverse depth up to scale and shift
    assert errors["none"] is None and errors["median"]["abs_rel"] < 1e-3 and errors["median"]["a1"] == 1.0


def _dark_rgbd_folder(shards, root, factor=0.25):
    """The sims as an RGB-D folder of darker frames: another domain for the teacher's statistics."""
    batch = first_samples(str(shards), (48, 64), 16)
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    for i, (rgb, depth) in enumerate(zip(batch["rgb"], batch["depth"])):
        Image.fromarray((rgb.permute(1, 2, 0).numpy() * 255 * factor).astype(np.uint8)).save(root / "rgb" / f"{i}.png")
        Image.fromarray((depth[0].numpy() * 1000).astype(np.uint16)).save(root / "depth" / f"{i}.png")
    return root


def test_distill_gap_reports_a_teacher_closer_to_the_images_its_statistics_came_from(tmp_path, synthetic_shards,
                                                                                    capsys):
    model = small_bn_depth_model()
    for m in model.modules():  # running statistics of the sims themselves
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        model(first_samples(str(synthetic_shards), SIZE.hw, 16)["rgb"])
    teacher = export(model.eval(), tmp_path / "t.pt2")
    real = _dark_rgbd_folder(synthetic_shards, tmp_path / "dark")
    rc = cli.main(["gap", "--teacher", str(teacher), "--teacher-mean", "0,0,0", "--teacher-std", "1,1,1",
                   "--shards", str(synthetic_shards), "--real", str(real), "--n", "16", "--out", str(tmp_path / "gap.png"),
                   "--json", str(tmp_path / "gap.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "raw sims" in out and "mixed sims" in out and "normalised BN distance per layer" in out
    report = json.loads((tmp_path / "gap.json").read_text())
    sets = report["sets"]
    assert sets["raw sims"]["bn_distance"] < 0.1 < sets["real"]["bn_distance"]
    assert len(sets["real"]["bn_per_layer"]) == report["bn_layers"] == 2
    assert sets["real"]["mean"][0] < sets["raw sims"]["mean"][0]
    assert 0 < sets["raw sims"]["depth"]["median"]["abs_rel"] < 10
    with Image.open(tmp_path / "gap.png") as im:  # 3 sets x 4 samples x (image | teacher | depth)
        assert im.size == (3 * 4 * SIZE.width, 3 * SIZE.height)
