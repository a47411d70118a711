"""Export a student to TorchScript or ONNX, run the export against the checkpoint, report the
largest difference. Input spec: float32 B x 3 x H x W, RGB in [0, 1] (normalisation is inside),
H x W = the training input size; output: metric depth in metres, B x 1 x H x W. A JSON beside
the file says so (`input_size` is [width, height], as everywhere in the project)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from distill.checkpoint import CHECKPOINT_VERSION
from simgen.options import ConfigError, Size, as_size

EXPORT_FORMATS = ("onnx", "torchscript")


def spec_path(out: str | Path) -> Path:
    """Where `export_model` writes an export's spec: beside it, NAME.EXT.json (student.onnx.json), so that
    exports of one model in two formats, and a run's config.json, never share a name."""
    return Path(f"{out}.json")


def read_export_spec(path: str | Path) -> dict | None:
    """The spec written beside an exported file, its input_size a Size, or None when there is none (also read:
    NAME.json, the name of earlier releases, whose version-1 specs stored the size as [height, width])."""
    for meta in (spec_path(path), Path(path).with_suffix(".json")):
        try:
            spec = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(spec, dict) and isinstance(spec.get("input_size"), list) and len(spec["input_size"]) == 2:
            size = spec["input_size"] if spec.get("version") else spec["input_size"][::-1]
            return {**spec, "input_size": as_size(size)}
    return None


def export_model(model: torch.nn.Module, input_size: Size, out: str | Path, fmt: str) -> dict:
    model = model.eval().cpu()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = as_size(input_size)
    h, w = size.hw
    example = torch.rand(2, 3, h, w)
    with torch.no_grad():
        reference = model(example)
    if fmt == "torchscript":
        with warnings.catch_warnings():  # tracing warns about the size arithmetic of padding; checked below
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            scripted = torch.jit.trace(model, example[:1])
        scripted.save(str(out))
        with torch.no_grad():
            got = torch.jit.load(str(out))(example)
    elif fmt == "onnx":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(model, (example[:1],), str(out), input_names=["image"], output_names=["depth"],
                              dynamic_axes={"image": {0: "batch"}, "depth": {0: "batch"}}, opset_version=17, dynamo=False)
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("wrote the ONNX file, but checking it needs onnxruntime: pip install onnxruntime") from None
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {"image": example.numpy()})[0])
    else:
        raise ConfigError(f"unknown format {fmt!r}; choose onnx or torchscript")
    spec = {"version": CHECKPOINT_VERSION,
            "input": {"name": "image", "shape": ["B", 3, h, w], "dtype": "float32", "range": "RGB in [0, 1], not normalised"},
            "output": {"name": "depth", "shape": ["B", 1, h, w], "unit": "metres"},
            "input_size": list(size), "format": fmt,
            "max_abs_diff": float((got - reference).abs().max()), "max_rel_diff": float(((got - reference).abs() / reference.abs().clamp_min(1e-6)).max())}
    spec_path(out).write_text(json.dumps(spec, indent=1))
    return spec
