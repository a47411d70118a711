"""Teachers as users save them: torch.export programs (full method) and TorchScript (plain KD,
with a clear reason for the BN loss). Small models built here; nothing downloaded. ONNX, output
kinds and model families: test_teacher_kinds.py."""

import pytest
import torch

from conftest import SIZE
from distill.layers import BNStatsHook
from distill.networks.transform import TransformNet
from distill.teacher import TeacherError, TeacherSpec, load_teacher, require_batchnorm


def small_bn_depth_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 1, 1), torch.nn.Softplus())
    for m in model.modules():  # running statistics that differ from a fresh layer's
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def export(model, path, dynamic_batch=True):
    h, w = SIZE.hw
    shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    torch.export.save(torch.export.export(model, (torch.rand(2, 3, h, w),), dynamic_shapes=shapes), str(path))
    return path


def test_an_exported_teacher_drives_the_bn_loss_like_the_model_it_came_from(tmp_path):
    model = small_bn_depth_model()
    teacher = load_teacher(TeacherSpec(str(export(model, tmp_path / "t.pt2")), mean=(0, 0, 0), std=(1, 1, 1)))
    assert teacher.spec.input_size == SIZE  # read from the program
    probes = require_batchnorm(teacher)
    assert len(probes) == 2
    exported_hooks = [BNStatsHook(m) for m in probes]
    eager_hooks = [BNStatsHook(m) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    x = torch.rand(4, 3, *SIZE.hw)
    with torch.no_grad():
        torch.testing.assert_close(teacher(x), model(x))
    # the BN loss on T(x) reaches T's parameters, and equals the eager model's
    transform = TransformNet()
    with torch.no_grad():
        transform.body[-1].weight.normal_(0, 0.1)  # leave the identity start: a non-trivial T
    teacher(transform(x).clamp(0, 1)).sum()
    loss = torch.stack([h.loss() for h in exported_hooks]).sum()
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in transform.parameters())
    with torch.no_grad():
        model(transform(x).clamp(0, 1))
    torch.testing.assert_close(loss.detach(), torch.stack([h.loss() for h in eager_hooks]).sum(), rtol=1e-5, atol=1e-6)


def test_exported_teacher_errors_say_how_to_fix_them(tmp_path):
    static = export(small_bn_depth_model(), tmp_path / "static.pt2", dynamic_batch=False)
    with pytest.raises(TeacherError, match=r"fixed batch of 2; re-export it with a dynamic batch"):
        load_teacher(TeacherSpec(str(static)))
    dynamic = export(small_bn_depth_model(), tmp_path / "t.pt2")
    with pytest.raises(TeacherError, match=r"was exported for 64x32 inputs; sizes are WIDTHxHEIGHT: did you mean 64x32"):
        load_teacher(TeacherSpec(str(dynamic), input_size=(32, 64)))


def test_a_torchscript_teacher_says_why_its_batchnorm_cannot_be_used(tmp_path):
    model = small_bn_depth_model()
    h, w = SIZE.hw
    with pytest.warns(DeprecationWarning):
        torch.jit.trace(model, torch.rand(1, 3, h, w)).save(str(tmp_path / "t.ts"))
    teacher = load_teacher(TeacherSpec(str(tmp_path / "t.ts"), input_size=SIZE))
    with pytest.raises(TeacherError, match=r"TorchScript teacher has 2 BatchNorm layers, but .* cannot be hooked.*"
                                           r"torch\.export\.save.*--transform off"):
        require_batchnorm(teacher)


def test_distill_train_with_an_exported_teacher_runs_the_full_method(tmp_path, synthetic_shards, train_config):
    from distill.train import Distiller, train

    teacher = export(small_bn_depth_model(), tmp_path / "t.pt2")
    cfg = train_config(synthetic_shards, teacher, tmp_path / "run", steps=2)
    assert len(Distiller(cfg).bn_hooks) == 2
    summary = train(cfg, show_progress=False)
    assert summary["steps"] == 2 and summary["last"]["bn"] > 0


def test_checking_a_teacher_leaves_the_global_rng_alone(tmp_path):
    """The student is initialised after the teacher is loaded: its weights must not depend on how
    many random probes the teacher's checks draw."""
    teacher = export(small_bn_depth_model(), tmp_path / "t.pt2")
    torch.manual_seed(3)
    before = torch.get_rng_state()
    load_teacher(TeacherSpec(str(teacher)))
    assert torch.equal(torch.get_rng_state(), before)


def test_teacher_check_says_what_train_would_find(tmp_path, capsys, synthetic_shards):
    import distill.cli as cli

    exported = export(small_bn_depth_model(), tmp_path / "t.pt2")
    assert cli.main(["teacher-check", str(exported), "--count", "2"]) == 0
    out = capsys.readouterr().out
    assert "torch.export program" in out and "64x32" in out and "2 layers hooked" in out
    assert "transformation network (BN statistics): yes" in out and "teacher ok for the full method" in out
    h, w = SIZE.hw
    with pytest.warns(DeprecationWarning):
        torch.jit.trace(small_bn_depth_model(), torch.rand(1, 3, h, w)).save(str(tmp_path / "t.ts"))
    args = ["teacher-check", str(tmp_path / "t.ts"), "--teacher-input-size", str(SIZE), "--count", "2"]
    assert cli.main(args) == 0  # train runs plain KD, and says why ...
    captured = capsys.readouterr()
    assert "note: the TorchScript teacher has 2 BatchNorm layers" in captured.err
    assert "teacher ok for plain KD with object-wise mixing" in captured.out
    assert cli.main(args + ["--transform", "on"]) == 2  # ... and would fail where the full method is required
    assert "cannot be hooked" in capsys.readouterr().err
    assert cli.main(args + ["--transform", "off"]) == 0
    assert "teacher ok for plain KD" in capsys.readouterr().out
    assert cli.main(["teacher-check", str(tmp_path / "nope.pt")]) == 2
    assert cli.main(["teacher-check", str(exported), "--shards", str(synthetic_shards), "--count", "3"]) == 0
    assert f"on 3 from {synthetic_shards}" in capsys.readouterr().out
