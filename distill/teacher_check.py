"""`distill teacher-check`: load a teacher exactly as `distill train` does and say what it is and
which parts of the method it supports, before any run is started."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill.exported import ExportedModel
from distill.hf_teacher import NAMES, HFDepthModel
from distill.onnx_teacher import OnnxModel
from distill.teacher import STUDENT_OUTPUTS, Teacher, TeacherError, TeacherSpec, load_teacher, require_batchnorm

LATENCY_REPEATS = 10  # single-image forward passes timed (median), after one untimed


def teacher_format(teacher: Teacher) -> str:
    model, source = teacher.model, teacher.spec.source
    if isinstance(model, HFDepthModel):
        kind = model.desc.model_type
        return (f"Hugging Face {NAMES.get(kind, kind)} ({kind}), from "
                + (f"folder {source}" if Path(source).is_dir() else f"the hub: {source}"))
    if isinstance(model, ExportedModel):
        return "torch.export program (.pt2)"
    if isinstance(model, OnnxModel):
        return "ONNX (onnxruntime)"
    if isinstance(model, torch.jit.ScriptModule):
        return "TorchScript"
    if Path(source).exists():
        return "checkpoint of this project"
    return f"factory {source}"


def sample_images(hw: tuple[int, int], shards: str | None, n: int) -> torch.Tensor:
    """n images at the teacher's input size: the first of a simgen dataset, or built-in synthetic rooms."""
    from distill.data import first_samples, resize_crop, to_tensors

    if shards:
        return first_samples(shards, hw, n)["rgb"]
    from simgen.synthetic import synthetic_sample

    rng = np.random.default_rng(0)
    return torch.stack([resize_crop(to_tensors(s.rgb, s.depth), hw, None)["rgb"]
                        for s in (synthetic_sample(i, (120, 160), rng) for i in range(n))])


def check(spec: TeacherSpec, shards: str | None = None, n: int = 8, device: str | torch.device = "cpu") -> dict[str, Any]:
    """What `distill train` would find. Raises TeacherError (one line) where the teacher cannot be
    loaded or run; `bn_problem` says why the transformation network could not use it, if so."""
    teacher = load_teacher(spec, device)
    report: dict[str, Any] = {"format": teacher_format(teacher), "input_size": str(teacher.spec.input_size),
                              "mean": teacher.spec.mean, "std": teacher.spec.std, "output": teacher.spec.output}
    try:
        report["bn_layers"], report["bn_problem"] = len(require_batchnorm(teacher)), None
    except TeacherError as e:
        report["bn_layers"], report["bn_problem"] = 0, str(e)
    images = sample_images(teacher.spec.input_size.hw, shards, n).to(device)
    with torch.no_grad():
        depth = teacher.target(images)
        times = []
        for _ in range(LATENCY_REPEATS + 1):
            t0 = time.perf_counter()
            teacher(images[:1])
            times.append(time.perf_counter() - t0)
    report["images"] = f"{len(images)} from {shards}" if shards else f"{len(images)} built-in synthetic rooms"
    report["depth_range"] = [float(depth.min()), float(depth.median()), float(depth.max())]
    report["latency_ms"] = float(np.median(times[1:]) * 1000)
    report["supports"] = {"plain KD": True, "object-wise mixing": True,
                          "transformation network (BN statistics)": report["bn_problem"] is None}
    report["student"] = STUDENT_MEANING[STUDENT_OUTPUTS[teacher.spec.output]]
    if isinstance(teacher.model, HFDepthModel):
        h, w = teacher.spec.input_size.hw
        rh, rw = teacher.model.size_for(h, w)
        report["hf"] = {"rules": teacher.model.desc.rules(), "run_size": f"{rw}x{rh}", "meaning": teacher.model.desc.meaning,
                        "max_depth": teacher.model.desc.max_depth}
    return report


# what the student of a teacher of each kind outputs (checkpoint's `output`), in words
STUDENT_MEANING = {"metric": "metric depth in metres",
                   "relative": "relative: learns scale-and-shift-invariant targets on inverse depth; eval aligns it "
                               "by scale and shift, export outputs relative inverse depth",
                   "relative-depth": "relative: learns scale-and-shift-invariant targets on depth; eval aligns it by "
                                     "scale and shift"}


def format_report(r: dict[str, Any]) -> str:
    lo, med, hi = r["depth_range"]
    hf = r.get("hf")
    lines = [f"format      {r['format']}",
             f"input       {r['input_size']} (WIDTHxHEIGHT), RGB in [0, 1] normalised with mean {r['mean']} std {r['std']}",
             *([f"runs at     {hf['run_size']} for {r['input_size']} images (it takes: {hf['rules']})",
                f"means       {hf['meaning']}"] if hf else []),
             f"output      {r['output']}; on {r['images']}: min {lo:.3g}, median {med:.3g}, max {hi:.3g}",
             f"student     {r['student']}",
             f"BatchNorm   {r['bn_layers']} layers hooked" if not r["bn_problem"] else "BatchNorm   none usable (see below)",
             f"latency     {r['latency_ms']:.1f} ms per image (batch 1, median of {LATENCY_REPEATS})",
             "supports    " + ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in r["supports"].items())]
    return "\n".join(lines)
