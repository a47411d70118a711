"""Exports that run at any size and say what they output; int8 quantization calibrated on the run's sims;
the latency measurement (distill/export.py, distill/latency.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from distill.checkpoint import load_model, save_checkpoint
from distill.export import TRACE_SIZE, check_export, export_onnx, onnx_runner
from distill.networks import build_depth_model
from simgen.options import Size

ROOT = Path(__file__).resolve().parents[1]


def run(*argv):
    return subprocess.run([sys.executable, "-m", "distill.cli", *argv], cwd=ROOT, capture_output=True, text=True)


@pytest.fixture(scope="module")
def student(tmp_path_factory, synthetic_shards):
    """A checkpoint of a MobileNetV2 student that records the synthetic dataset as its run's --shards."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("student") / "student.pt"
    save_checkpoint(path, build_depth_model("mobilenetv2"), "mobilenetv2", Size(64, 32), 0.1, 10.0,
                    config={"shards": [str(synthetic_shards)]})
    return path


def test_onnx_takes_any_height_and_width_and_says_what_it_outputs(student, tmp_path):
    import onnx

    r = run("export", "--model", str(student), "--format", "onnx", "--out", str(tmp_path / "s.onnx"),
            "--check-size", "320x240", "--check-size", "100x70")
    assert r.returncode == 0, r.stderr
    spec = json.loads((tmp_path / "s.onnx.json").read_text())
    assert set(spec["checked"]) == {"64x32", "320x240", "100x70"}  # its own size and those asked for
    assert all(d["max_abs_diff"] < 1e-4 for d in spec["checked"].values()), spec["checked"]
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "s.onnx")).metadata_props}
    assert props["distill.output"] == "metric depth" and props["distill.output_unit"] == "metres"
    assert json.loads(props["distill.output_range"]) == [0.1, 10.0] and "[0, 1]" in props["distill.input"]


def test_a_graph_traced_at_a_multiple_of_32_would_be_wrong_elsewhere(tmp_path):
    """Why TRACE_SIZE is not a multiple of 32: traced without its padding, the graph runs at 320x240 without an
    error and gives other depth; traced with it, the same depth as PyTorch."""
    torch.manual_seed(0)
    model = build_depth_model("mobilenetv2").eval()
    assert TRACE_SIZE.width % 32 and TRACE_SIZE.height % 32
    diffs = {}
    for name, trace in (("multiple", Size(64, 32)), ("ours", TRACE_SIZE)):
        export_onnx(model, trace, tmp_path / f"{name}.onnx", "depth")
        diffs[name] = check_export(model, onnx_runner(tmp_path / f"{name}.onnx"), (Size(96, 72),))[Size(96, 72)]
    assert diffs["ours"]["max_abs_diff"] < 1e-4 < diffs["multiple"]["max_abs_diff"], diffs


@pytest.mark.slow
def test_int8_is_calibrated_on_the_runs_shards_and_evaluates_close_to_fp32(student, synthetic_shards, tmp_path):
    paths = {"fp32": tmp_path / "s.onnx", "int8": tmp_path / "s-int8.onnx"}
    assert run("export", "--model", str(student), "--format", "onnx", "--out", str(paths["fp32"])).returncode == 0
    r = run("export", "--model", str(student), "--format", "onnx", "--out", str(paths["int8"]), "--int8",
            "--calibration-count", "8")
    assert r.returncode == 0, r.stderr
    spec = json.loads((tmp_path / "s-int8.onnx.json").read_text())
    assert spec["int8"]["calibration_images"] == 8
    import onnx

    graph = onnx.load(str(paths["int8"])).graph
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) > 10  # quantized, not a copy of the fp32 graph
    x = torch.rand(2, 3, 32, 64, generator=torch.Generator().manual_seed(1))
    fp32, int8 = (onnx_runner(p)(x) for p in paths.values())
    assert (int8 - fp32).abs().max() > 0  # another model...
    assert ((int8 - fp32).abs() / fp32).mean() < 0.05  # ...that predicts nearly the same depth
    scores = {}
    for name, path in paths.items():  # eval runs an ONNX export (with its spec) like a checkpoint
        r = run("eval", "--model", str(path), "--data", str(synthetic_shards), "--split", "all", "--protocol", "none",
                "--out", str(tmp_path / f"eval-{name}"))
        assert r.returncode == 0, r.stderr
        scores[name] = json.loads((tmp_path / f"eval-{name}" / "metrics.json").read_text())["overall"]["abs_rel"]
    assert abs(scores["int8"] - scores["fp32"]) < 0.02, scores


def test_bad_export_requests_are_one_line_and_write_nothing(student, teacher_file, tmp_path):
    out = tmp_path / "s.onnx"
    cases = [(("--model", str(student), "--format", "torchscript", "--int8"), "use --format onnx"),
             (("--model", str(teacher_file), "--format", "onnx", "--int8"), "--int8 needs calibration images"),
             (("--model", str(student), "--format", "onnx", "--int8", "--calibration", str(tmp_path)),
              "is not a simgen dataset"),
             (("--model", str(student), "--format", "onnx", "--check-size", "16x16"), "at least 32x32"),
             (("--model", str(tmp_path / "nothing.pt"), "--format", "onnx"), "no such file")]
    for args, says in cases:
        r = run("export", *args, "--out", str(out))
        assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not out.exists()
    out.write_text("an earlier export")
    r = run("export", "--model", str(student), "--format", "onnx", "--out", str(out))
    assert r.returncode != 0 and "--force" in r.stderr and out.read_text() == "an earlier export"


def test_latency_row_times_every_backend(monkeypatch):
    from distill import latency

    monkeypatch.setattr(latency, "native_bf16", lambda device: True)
    row = latency.latency_row(build_depth_model("mobilenetv2"), Size(64, 32), 1, torch.rand(2, 3, 32, 64), repeats=2)
    assert set(row) == {"params", "macs", "eager_fp32", "eager_bf16", "onnx_fp32", "onnx_int8"}
    assert all(row[k] > 0 for k in row)


def test_an_onnx_file_without_its_spec_is_not_taken_for_a_student(tmp_path):
    from distill.checkpoint import CheckpointError

    model = build_depth_model("mobilenetv2").eval()
    export_onnx(model, TRACE_SIZE, tmp_path / "bare.onnx", "depth")
    with pytest.raises(CheckpointError, match="is an ONNX model"):
        load_model(tmp_path / "bare.onnx")


@pytest.mark.slow
def test_a_slim_student_distils_from_the_teacher_with_hints_on_its_selected_channels(
        synthetic_shards, teacher_file, train_config, tmp_path):
    """The >= 4x faster student (scripts/bench_latency.py) in the end-point recipe: started from the teacher by
    channel selection, hints on the selected channels, the teacher's BN statistics kept."""
    from distill.distiller import Distiller

    cfg = train_config(synthetic_shards, teacher_file, tmp_path / "run", student="resnet10-slim",
                       init_student="teacher", w_feature=10.0, student_bn="teacher", precision="fp32")
    d = Distiller(cfg)
    assert [len(ix) for ix in d.student.hint_channels] == [32, 32, 64, 128, 256]
    from distill.data import first_samples

    batch = first_samples(synthetic_shards, (32, 64), 4)
    logs = d.train_step({k: v.to(d.device) for k, v in batch.items()})
    assert 0 < logs["kd_feature"] < float("inf")
