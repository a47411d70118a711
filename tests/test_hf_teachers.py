"""Hugging Face depth models as teachers (distill/hf_teacher.py), on tiny random-weight models saved offline
with save_pretrained (tests/hf_models.py): teacher-check, 20 training steps, eval and export for each family,
their descriptions read from the configs, and the one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from distill import cli  # noqa: E402
from distill.checkpoint import load_model, read_checkpoint  # noqa: E402
from distill.hf_teacher import HFDepthModel, describe  # noqa: E402
from distill.layers import align_prediction  # noqa: E402
from simgen.options import Size  # noqa: E402
from hf_models import FAMILIES, save_tiny_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RELATIVE = {"depth-anything"}  # the families whose output is relative; the others are metric
# the hub configs of real models, as far as distill reads them (config.json, preprocessor_config.json)
DA_V2_SMALL = ({"model_type": "depth_anything", "depth_estimation_type": "relative",
                "backbone_config": {"model_type": "dinov2", "patch_size": 14}},
               {"size": {"height": 518, "width": 518}, "keep_aspect_ratio": True, "ensure_multiple_of": 14,
                "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "do_normalize": True})


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {name: save_tiny_model(name, root / name) for name in FAMILIES}


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_checks_trains_evaluates_and_exports(family, hf_models, synthetic_shards, tmp_path, capsys):
    teacher, relative, full = str(hf_models[family]), family in RELATIVE, family == "glpn"
    assert cli.main(["teacher-check", teacher, "--teacher-input-size", "64x32", "--shards", str(synthetic_shards)]) == 0
    out = capsys.readouterr().out
    assert "Hugging Face" in out and f"output      {'relative' if relative else 'metric'};" in out
    assert ("the full method" if full else "plain KD with object-wise mixing") in out

    run = tmp_path / "run"
    assert cli.main(["train", "--shards", str(synthetic_shards), "--teacher", teacher, "--teacher-input-size", "64x32",
                     "--out", str(run), "--steps", "20", "--batch-size", "2", "--workers", "0", "--device", "cpu",
                     "--precision", "fp32", "--quiet"]) == 0
    said = capsys.readouterr().out
    ckpt = read_checkpoint(run / "student.pt")
    assert ckpt["step"] == 20 and ckpt["output"] == ("relative" if relative else "metric")
    assert (ckpt["transform"] is not None) == full  # GLPN's BatchNorm layers drive T; the others: plain KD
    assert ("6 BN layers hooked" if full else "LayerNorm") in said

    assert cli.main(["eval", "--model", str(run / "student.pt"), "--data", str(synthetic_shards), "--split", "all",
                     "--protocol", "none", "--precision", "fp32", "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["align"] == ("scale-shift-inverse" if relative else "none")
    assert torch.isfinite(torch.tensor(list(metrics["overall"].values()))).all()

    onnx_file = tmp_path / "student.onnx"
    assert cli.main(["export", "--model", str(run / "student.pt"), "--format", "onnx", "--out", str(onnx_file)]) == 0
    import onnx

    props = {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}
    assert props["distill.output"] == ("relative inverse depth" if relative else "metric depth")
    assert props["distill.input_size"] == "64x32"


def test_descriptions_come_from_the_models_own_configs():
    da = describe(*DA_V2_SMALL)
    assert (da.output, da.multiple, da.mean) == ("relative", 14, (0.485, 0.456, 0.406))
    # 320x224 images: the preprocessor scales as little as possible to 518 (the width), to multiples of 14
    assert HFDepthModel(torch.nn.Identity(), da).run_hw(224, 320) == (364, 518)
    metric = describe({**DA_V2_SMALL[0], "depth_estimation_type": "metric", "max_depth": 20}, DA_V2_SMALL[1])
    assert (metric.output, metric.max_depth) == ("metric", 20)
    glpn = describe({"model_type": "glpn", "max_depth": 10}, {"size_divisor": 32})
    assert (glpn.output, glpn.mean, glpn.std) == ("metric", (0.0,) * 3, (1.0,) * 3)
    assert HFDepthModel(torch.nn.Identity(), glpn).run_hw(240, 330) == (224, 320)  # rounded down, as GLPN's
    vit = describe({"model_type": "dpt", "patch_size": 16}, {})  # dpt-large: plain ViT, relative, square
    assert (vit.output, vit.square) == ("relative", True)
    assert HFDepthModel(torch.nn.Identity(), vit).run_hw(224, 320) == (384, 384)
    hybrid = describe({"model_type": "dpt", "is_hybrid": True, "image_size": 384}, {})
    assert hybrid.fixed == (384, 384)
    assert describe({"model_type": "dpt", "backbone_config": {"model_type": "dinov2"}}, {}).output == "metric"
    pro = describe({"model_type": "depth_pro", "use_fov_model": True}, {})
    assert (pro.fixed, pro.output, pro.fov_to_metres) == ((1536, 1536), "metric", True)


class _Fake(torch.nn.Module):
    """Stands in for a transformers model: returns what `make` computes from pixel_values."""

    def __init__(self, make):
        super().__init__()
        self.make = make

    def forward(self, pixel_values):
        return self.make(pixel_values)


def test_depth_pro_inverse_depth_and_field_of_view_become_metres():
    from types import SimpleNamespace

    desc = describe({"model_type": "depth_pro", "use_fov_model": True, "patch_size": 8,
                     "scaled_images_ratios": [0.25, 1]}, {})
    # inverse depth 0.25 everywhere at a 90 degree field of view: width / focal = 2 tan(45) = 2, so depth = 1 / 0.5
    fake = _Fake(lambda x: SimpleNamespace(predicted_depth=torch.full((len(x), 32, 32), 0.25),
                                           field_of_view=torch.full((len(x),), 90.0)))
    depth = HFDepthModel(fake, desc)(torch.rand(2, 3, 24, 40))
    assert depth.shape == (2, 1, 24, 40) and torch.allclose(depth, torch.full_like(depth, 2.0))


def test_zoedepth_padding_is_cropped_off_where_the_image_was():
    desc = describe({"model_type": "zoedepth", "backbone_config": {"patch_size": 16}},
                    {"size": {"height": 64, "width": 96}, "keep_aspect_ratio": True, "ensure_multiple_of": 32})
    assert desc.pad
    ramp = torch.linspace(1, 2, 80).expand(1, 3, 48, 80).contiguous()  # depth grows left to right
    echo = HFDepthModel(_Fake(lambda x: type("O", (), {"predicted_depth": x[:, 0]})()), desc)(ramp)
    assert echo.shape == (1, 1, 48, 80)
    inner = (echo[0, 0, 8:-8, 8:-8] - ramp[0, 0, 8:-8, 8:-8]).abs().max()
    assert inner < 0.05, inner  # a misplaced crop would shift the ramp by the padding (about 0.2)


def test_relative_alignment_recovers_depth_from_affine_inverse_depth():
    gt = torch.linspace(0.5, 8.0, 200)
    pred = 1.0 / (3.0 / gt + 0.7)  # a relative student: its inverse is an affine function of inverse depth
    assert torch.allclose(align_prediction(pred, gt, "scale-shift-inverse"), gt, rtol=1e-4)
    assert not torch.allclose(align_prediction(pred, gt, "scale-shift"), gt, rtol=1e-2)


@pytest.mark.slow
def test_a_relative_students_exports_say_inverse_depth_and_evaluate_as_the_checkpoint(
        hf_models, synthetic_shards, tmp_path):
    run = tmp_path / "run"
    assert cli.main(["train", "--shards", str(synthetic_shards), "--teacher", str(hf_models["depth-anything"]),
                     "--teacher-input-size", "64x32", "--out", str(run), "--steps", "4", "--batch-size", "2",
                     "--workers", "0", "--device", "cpu", "--precision", "fp32", "--quiet"]) == 0
    assert cli.main(["export", "--model", str(run / "student.pt"), "--format", "torchscript",
                     "--out", str(tmp_path / "s.ts")]) == 0
    spec = json.loads((tmp_path / "s.ts.json").read_text())
    assert spec["output"]["name"] == "inverse_depth" and spec["student_output"] == "relative"
    image = torch.rand(1, 3, 32, 64)
    student, _ = load_model(run / "student.pt")
    exported = torch.jit.load(str(tmp_path / "s.ts"))
    assert torch.allclose(exported(image), 1.0 / student(image), rtol=1e-5)
    scores = []
    for model in (run / "student.pt", tmp_path / "s.ts"):
        assert cli.main(["eval", "--model", str(model), "--data", str(synthetic_shards), "--split", "all",
                         "--protocol", "none", "--precision", "fp32", "--out", str(tmp_path / f"eval-{model.name}")]) == 0
        scores.append(json.loads((tmp_path / f"eval-{model.name}" / "metrics.json").read_text()))
    assert scores[1]["align"] == "scale-shift-inverse"
    assert abs(scores[0]["overall"]["abs_rel"] - scores[1]["overall"]["abs_rel"]) < 1e-4


# ------------------------------------------------------------------ one-line errors, nothing written


def _error(capsys, *argv):
    assert cli.main(list(argv)) == 2
    return capsys.readouterr().err.strip()


def test_bad_hugging_face_teachers_get_one_line_errors_and_no_run_is_started(hf_models, synthetic_shards, tmp_path,
                                                                             capsys, monkeypatch):
    from transformers import BertConfig

    (tmp_path / "empty").mkdir()
    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(
        tmp_path / "bert")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cases = {str(tmp_path / "empty"): "a folder without config.json",
             str(tmp_path / "bert"): "a bert model, not a depth estimator",
             "depth-anything/Depth-Anything-V2-Small-hf": "hf download depth-anything/Depth-Anything-V2-Small-hf"}
    for teacher, says in cases.items():
        out = tmp_path / "run"
        err = _error(capsys, "train", "--shards", str(synthetic_shards), "--teacher", teacher, "--out", str(out),
                     "--steps", "2", "--workers", "0", "--device", "cpu")
        assert says in err and len(err.splitlines()) == 1, err
        assert not out.exists()
    err = _error(capsys, "teacher-check", str(hf_models["depth-anything"]), "--teacher-run-size", "60x30")
    assert "multiples of 14; e.g. 56x28" in err
    err = _error(capsys, "teacher-check", str(hf_models["depth-pro"]), "--teacher-run-size", "64x64")
    assert "runs at 128x128 only" in err


def test_a_torchvision_that_breaks_transformers_is_named(hf_models, tmp_path):
    """PyPI's torchvision next to the CPU torch fails at import; transformers then cannot build its depth models."""
    fake = tmp_path / "site"
    (fake / "torchvision").mkdir(parents=True)
    (fake / "torchvision" / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")')
    (fake / "torchvision-0.29.1.dist-info").mkdir()
    (fake / "torchvision-0.29.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: torchvision\n"
                                                                      "Version: 0.29.1\n")
    r = subprocess.run([sys.executable, "-m", "distill.cli", "teacher-check", str(hf_models["glpn"])], cwd=ROOT,
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(fake)})
    assert r.returncode == 2 and "pip uninstall torchvision" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_size_that_only_a_hugging_face_model_takes_is_refused_for_other_teachers(teacher_file):
    from distill.teacher import TeacherError, TeacherSpec

    with pytest.raises(TeacherError, match="--teacher-run-size is for Hugging Face teachers"):
        TeacherSpec(source=str(teacher_file), run_size=Size(64, 32))
