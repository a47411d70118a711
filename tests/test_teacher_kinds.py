"""Teachers of the shapes users bring (docs/distill.md's worked examples), the output kinds they
predict, ONNX files, and bad teachers. Every model is built here; nothing is downloaded."""

import json
import warnings
from dataclasses import replace

import pytest
import torch
from torch import nn

import distill.cli as cli
from conftest import SIZE
from distill.layers import kd_loss
from distill.teacher import OUTPUT_KINDS, Teacher, TeacherError, TeacherSpec, check_teacher, load_teacher
from test_teachers import export, small_bn_depth_model


# ------------------------------------------------------------------------------ model families


class MidasLike(nn.Module):
    """A MiDaS-style relative CNN: BN encoder, upsampling decoder, relative inverse depth (up to
    scale and shift), returned in a dict beside a feature map."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                     nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Sequential(nn.Upsample(scale_factor=4, mode="bilinear"), nn.Conv2d(16, 1, 3, padding=1),
                                  nn.ReLU())

    def forward(self, x):
        features = self.encoder(x)
        return {"features": features, "inverse_depth": 40.0 * self.head(features) + 3.0}


class VitLike(nn.Module):
    """A ViT depth teacher without BatchNorm: patch embedding, a transformer block (LayerNorm), a
    per-patch depth head."""

    PATCH = 8

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, 32, self.PATCH, stride=self.PATCH)
        self.block = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, dropout=0.0)
        self.head = nn.Linear(32, 1)

    def forward(self, x):
        tokens = self.embed(x)
        b, c, h, w = tokens.shape
        tokens = self.block(tokens.flatten(2).transpose(1, 2))
        depth = nn.functional.softplus(self.head(tokens)).transpose(1, 2).reshape(b, 1, h, w) + 0.5
        return nn.functional.interpolate(depth, scale_factor=self.PATCH, mode="bilinear")


def seeded(model):
    torch.manual_seed(0)
    return model().eval() if isinstance(model, type) else model.eval()


def test_a_midas_style_relative_teacher_runs_the_full_method_with_the_invariant_loss(
        tmp_path, synthetic_shards, train_config, capsys):
    from distill.train import train

    program = export(seeded(MidasLike), tmp_path / "midas.pt2")
    cfg = train_config(synthetic_shards, program, tmp_path / "run", steps=2)
    cfg = replace(cfg, teacher={"source": str(program), "output": "relative", "output_key": "inverse_depth"})
    summary = train(cfg, show_progress=False)
    out = capsys.readouterr().out
    assert "scale-and-shift-invariant" in out and "transformation network (2 BN layers hooked)" in out
    assert summary["last"]["bn"] > 0 and summary["last"]["kd_normal"] == 0  # SSI loss has no normal term


def test_a_vit_teacher_without_batchnorm_runs_plain_kd_with_mixing_and_says_so(
        tmp_path, synthetic_shards, train_config, capsys):
    from distill.train import train

    program = export(seeded(VitLike), tmp_path / "vit.pt2")
    summary = train(train_config(synthetic_shards, program, tmp_path / "run", steps=2), show_progress=False)
    out = capsys.readouterr().out
    assert "object-wise mixing + no transformation network (--transform auto: the teacher has no BatchNorm" in out
    assert summary["steps"] == 2 and "bn" not in summary["last"]
    with pytest.raises(TeacherError, match="no BatchNorm layers"):  # asked for explicitly: an error, nothing written
        train(train_config(synthetic_shards, program, tmp_path / "run2", steps=2, transform="on"), show_progress=False)
    assert not (tmp_path / "run2").exists()


# ------------------------------------------------------------------------------- output kinds


class Fixed(nn.Module):
    """Returns one fixed map, whatever the image: what a teacher of each kind outputs for `depth`."""

    def __init__(self, output):
        super().__init__()
        self.register_buffer("output", output)

    def forward(self, x):
        return self.output.expand(len(x), -1, -1, -1)


@pytest.mark.parametrize("kind", list(OUTPUT_KINDS))
def test_each_output_kind_gives_the_kd_loss_its_target(kind):
    torch.manual_seed(0)
    depth = torch.rand(1, 1, *SIZE.hw) * 4 + 0.5
    output, scale = {"metric": (depth / 2, 2.0), "inverse": (1 / depth, None), "disparity": (30 / depth, 30.0),
                     "relative": (7 / depth + 0.3, None), "relative-depth": (3 * depth + 1, None)}[kind]
    teacher = Teacher(Fixed(output), TeacherSpec(output=kind, scale=scale, input_size=SIZE))
    check_teacher(teacher)
    image = torch.rand(2, 3, *SIZE.hw)
    target = teacher.target(image)
    student_right, student_wrong = depth.expand(2, -1, -1, -1), (depth ** 0.5).expand(2, -1, -1, -1)
    assert kd_loss(kind, student_right, target, 1.0, 1.0)["total"] < 1e-4
    assert kd_loss(kind, student_wrong, target, 1.0, 1.0)["total"] > 0.05
    if kind == "metric":  # read as the wrong kind, the same output is a wrong target
        assert kd_loss("inverse", student_right, Teacher(Fixed(output), TeacherSpec(output="inverse", scale=2.0))
                       .target(image), 1.0, 1.0)["total"] > 0.05


def test_output_kind_options_that_cannot_work_are_refused():
    with pytest.raises(TeacherError, match="disparity needs --teacher-scale"):
        TeacherSpec(output="disparity")
    with pytest.raises(TeacherError, match="relative outputs have no scale"):
        TeacherSpec(output="relative", scale=2.0)
    assert cli.main(["teacher-check", "x.pt2", "--teacher-output", "disparity"]) == 2


def test_tuple_and_dict_outputs_are_picked_by_key():
    two = torch.rand(1, 1, *SIZE.hw) + 1

    class Returns(nn.Module):
        def __init__(self, kind):
            super().__init__()
            self.kind = kind

        def forward(self, x):
            features = x.mean(1, keepdim=True).expand(-1, 3, -1, -1)
            depth = two.expand(len(x), -1, -1, -1)
            return {"feat": features, "depth": depth} if self.kind == "dict" else (features, depth)

    for kind, key in (("dict", "depth"), ("tuple", "1")):
        with pytest.raises(TeacherError, match="several outputs: pick the depth one with --teacher-output-key"):
            check_teacher(Teacher(Returns(kind), TeacherSpec(input_size=SIZE)))
        teacher = Teacher(Returns(kind), TeacherSpec(input_size=SIZE, output_key=key))
        torch.testing.assert_close(teacher.target(torch.rand(2, 3, *SIZE.hw)), two.expand(2, -1, -1, -1))
    with pytest.raises(TeacherError, match="outputs are feat, depth"):
        check_teacher(Teacher(Returns("dict"), TeacherSpec(input_size=SIZE, output_key="disp")))
    with pytest.raises(TeacherError, match="returns 2 outputs; give an index 0-1"):
        check_teacher(Teacher(Returns("tuple"), TeacherSpec(input_size=SIZE, output_key="5")))


# ------------------------------------------------------------------------------------- ONNX


def export_onnx(model, path, dynamic_batch=True):
    h, w = SIZE.hw
    axes = {"image": {0: "batch"}, "depth": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():  # the legacy exporter warns that it is legacy; it needs no onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (torch.rand(1, 3, h, w),), str(path), input_names=["image"], output_names=["depth"],
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    return path


@pytest.mark.parametrize("dynamic_batch", [True, False])
def test_an_onnx_teacher_matches_its_model_and_runs_plain_kd(tmp_path, dynamic_batch, synthetic_shards,
                                                             train_config, capsys):
    from distill.train import train

    model = small_bn_depth_model()
    path = export_onnx(model, tmp_path / "t.onnx", dynamic_batch)
    teacher = load_teacher(TeacherSpec(str(path)))
    assert teacher.spec.input_size == SIZE  # read from the file
    x = torch.rand(3, 3, *SIZE.hw)
    with torch.no_grad():  # a fixed-batch export runs image by image
        torch.testing.assert_close(teacher(x), Teacher(model, TeacherSpec(input_size=SIZE))(x), rtol=1e-4, atol=1e-5)
    if dynamic_batch:
        summary = train(train_config(synthetic_shards, path, tmp_path / "run", steps=2), show_progress=False)
        assert summary["steps"] == 2 and summary["last"]["mix_pixels"] >= 0
        assert "no transformation network (--transform auto: an ONNX teacher runs in onnxruntime" in capsys.readouterr().out


def test_teacher_check_on_an_onnx_teacher(tmp_path, capsys):
    path = export_onnx(small_bn_depth_model(), tmp_path / "t.model")  # found by content, not only by suffix
    assert cli.main(["teacher-check", str(path), "--count", "2"]) == 0
    captured = capsys.readouterr()
    assert "ONNX (onnxruntime)" in captured.out and "teacher ok for plain KD with object-wise mixing" in captured.out
    assert "gives no gradients back" in captured.err
    assert cli.main(["teacher-check", str(path), "--count", "2", "--transform", "on"]) == 2


# ------------------------------------------------------------------------------- bad teachers


def _factory(tmp_path, monkeypatch, body):
    (tmp_path / "badteachers.py").write_text("import torch\n" + body)
    monkeypatch.syspath_prepend(str(tmp_path))


BAD_FACTORIES = (
    "class ThreeChannels(torch.nn.Module):\n    def forward(self, x):\n        return x.abs() + 1\n"
    "class NaNs(torch.nn.Module):\n    def forward(self, x):\n        return x[:, :1] * float('nan')\n"
    "class FixedSize(torch.nn.Module):\n"
    "    def __init__(self):\n        super().__init__()\n        self.fc = torch.nn.Linear(3 * 48 * 48, 48 * 48)\n"
    "    def forward(self, x):\n        return self.fc(x.flatten(1)).view(-1, 1, 48, 48).abs()\n")


@pytest.mark.parametrize("teacher,flags,message", [
    ("garbage.pt", [], "not a checkpoint"),
    ("notes.json", [], "not a checkpoint"),
    ("weights.pt", [], "a plain state dict"),
    ("badteachers:ThreeChannels", [], r"output has shape \(2, 3, 32, 64\); expected B x 1 x H x W"),
    ("badteachers:NaNs", [], "output has NaN or inf"),
    ("badteachers:FixedSize", [], "teacher failed on a 2 x 3 x 32 x 64 input .* check --teacher-input-size"),
    ("missing.pt2", [], "no such file"),
])
def test_bad_teachers_get_one_line_and_nothing_is_written(tmp_path, monkeypatch, capsys, synthetic_shards,
                                                          teacher, flags, message):
    import re

    _factory(tmp_path, monkeypatch, BAD_FACTORIES)
    (tmp_path / "garbage.pt").write_bytes(bytes(range(256)) * 40)
    (tmp_path / "notes.json").write_text(json.dumps({"not": "a model"}))
    torch.save(small_bn_depth_model().state_dict(), tmp_path / "weights.pt")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    rc = cli.main(["train", "--shards", str(synthetic_shards), "--teacher", teacher, "--teacher-input-size", str(SIZE),
                   "--out", str(out), "--steps", "2", "--workers", "0", "--device", "cpu", *flags])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and re.search(message, err), err
    assert not out.exists()
