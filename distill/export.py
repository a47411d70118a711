"""Export a student to TorchScript or ONNX, run the export against the checkpoint, report the
largest difference. Input spec: float32 B x 3 x H x W, RGB in [0, 1] (normalisation is inside),
H x W = the training input size; output B x 1 x H x W: metric depth in metres, or for the student of
a relative teacher relative inverse depth (up to scale and shift, larger is nearer: what Depth
Anything and MiDaS output). A JSON beside the file says so (`input_size` is [width, height], as
everywhere in the project), and an ONNX file carries the same in its own metadata (OUTPUT_META)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from distill.checkpoint import CHECKPOINT_VERSION
from simgen.options import ConfigError, Size, as_size

EXPORT_FORMATS = ("onnx", "torchscript")
# what the exported model outputs, by the checkpoint's `output` (distill.teacher.STUDENT_OUTPUTS)
OUTPUT_META = {
    "metric": {"name": "depth", "kind": "metric depth", "unit": "metres"},
    "relative": {"name": "inverse_depth", "kind": "relative inverse depth",
                 "unit": "none: up to scale and shift, larger is nearer"},
    "relative-depth": {"name": "depth", "kind": "relative depth", "unit": "none: up to scale and shift"},
}
INPUT_META = "float32 B x 3 x H x W, RGB in [0, 1], not normalised (the model normalises inside)"


class Reciprocal(torch.nn.Module):
    """1 / the model's output: a relative student's depth exported as the inverse depth it learnt, and read back."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return 1.0 / self.model(image)


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


# sizes (WIDTHxHEIGHT) an ONNX export is checked at against PyTorch, besides its training size: its height and
# width are dynamic, any from 32 up (the model pads to multiples of 32 inside and crops after)
CHECK_SIZES = (Size(128, 96), Size(320, 240), Size(640, 480))
MIN_SIDE = 32
# the ONNX graph is traced at a size that is not a multiple of 32, so that the padding is in it: traced at a
# multiple, the graph has no padding and gives wrong depth at other sizes (0.04 m off at 320x240, no error)
TRACE_SIZE = Size(72, 40)


def export_model(model: torch.nn.Module, input_size: Size, out: str | Path, fmt: str, output: str = "metric",
                 depth_range: tuple[float, float] = (0.1, 10.0), calibration: torch.Tensor | None = None,
                 check_sizes: tuple[Size, ...] = CHECK_SIZES) -> dict:
    """Write the export and its spec; `output` is the checkpoint's (what its depth means), `depth_range` its
    (min_depth, max_depth); `calibration` (N x 3 x H x W images): quantize the ONNX model to int8 on them.
    Each checked size's largest difference to PyTorch is in the spec (`checked`)."""
    model = (Reciprocal(model) if output == "relative" else model).eval().cpu()
    meta = OUTPUT_META[output]
    out, size = Path(out), as_size(input_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    h, w = size.hw
    if fmt == "torchscript":
        with warnings.catch_warnings():  # tracing warns about the size arithmetic of padding; checked below
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.jit.trace(model, torch.rand(1, 3, h, w)).save(str(out))
        checked = check_export(model, lambda x: torch.jit.load(str(out))(x), (size,))
        shape = ["B", 3, h, w]
    elif fmt == "onnx":
        export_onnx(model, TRACE_SIZE, out, meta["name"])
        if calibration is not None:
            quantize_int8(out, calibration)
        run = onnx_runner(out)
        checked = check_export(model, run, tuple(dict.fromkeys((size, *check_sizes))))
        shape = ["B", 3, "H", "W"]
    else:
        raise ConfigError(f"unknown format {fmt!r}; choose onnx or torchscript")
    lo, hi = depth_range
    spec = {"version": CHECKPOINT_VERSION,
            "input": {"name": "image", "shape": shape, "dtype": "float32", "range": "RGB in [0, 1], not normalised",
                      **({"min_side": MIN_SIDE} if fmt == "onnx" else {})},
            "output": {**meta, "shape": ["B", 1, *shape[2:]], "range": [1.0 / hi, 1.0 / lo] if output == "relative"
                       else [lo, hi]},
            "student_output": output, "input_size": list(size), "format": fmt,
            "int8": None if calibration is None else {"calibration_images": len(calibration),
                                                      "method": "static, QDQ, per-channel (onnxruntime)"},
            "checked": {str(s): d for s, d in checked.items()},
            "max_abs_diff": max(d["max_abs_diff"] for d in checked.values()),
            "max_rel_diff": max(d["max_rel_diff"] for d in checked.values())}
    if fmt == "onnx":
        write_onnx_metadata(out, spec)
    spec_path(out).write_text(json.dumps(spec, indent=1))
    return spec


def export_onnx(model: torch.nn.Module, size: Size, out: Path, output_name: str) -> None:
    """ONNX (opset 17) with dynamic batch, height and width, traced at `size` (not a multiple of 32: TRACE_SIZE)."""
    dynamic = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(model, (torch.rand(1, 3, *size.hw),), str(out), input_names=["image"],
                          output_names=[output_name], dynamic_axes={"image": dynamic, output_name: dynamic},
                          opset_version=17, dynamo=False)


def onnx_runner(path: Path, threads: int = 0) -> torch.nn.Module:
    """The exported ONNX model run by onnxruntime (CPU, `threads` intra-op threads; 0: its default)."""
    from distill.onnx_teacher import OnnxModel

    return OnnxModel(path, threads)


def check_export(model: torch.nn.Module, run, sizes: tuple[Size, ...]) -> dict[Size, dict[str, float]]:
    """The exported model against PyTorch on a random batch of two at each size: largest differences."""
    gen, result = torch.Generator().manual_seed(0), {}
    for size in sizes:
        x = torch.rand(2, 3, *size.hw, generator=gen)
        with torch.no_grad():
            reference, got = model(x), run(x)
        diff = (got - reference).abs()
        result[size] = {"max_abs_diff": float(diff.max()),
                        "max_rel_diff": float((diff / reference.abs().clamp_min(1e-6)).max())}
    return result


def quantize_int8(path: Path, images: torch.Tensor) -> None:
    """Replace the fp32 ONNX model at `path` by its static int8 quantization (onnxruntime: QDQ, weights int8 per
    channel, activations uint8), its ranges calibrated on `images` (N x 3 x H x W in [0, 1])."""
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Images(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"image": im[None].numpy()} for im in images])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(path), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(Path(tmp) / "int8.onnx"), Images(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=INT8_OPS)
        (Path(tmp) / "int8.onnx").replace(path)


# the operators int8 quantization converts: the convolutions and what joins them; the output head's sigmoid and
# its reciprocal to depth stay in float, so depth is not rounded to 256 levels
INT8_OPS = ["Conv", "Relu", "Add", "Concat", "Resize", "Pad", "Clip", "MaxPool"]


def write_onnx_metadata(path: Path, spec: dict) -> None:
    """What the model takes and outputs, in the ONNX file's own metadata_props (keys distill.*), so that the
    file says it without the JSON beside it."""
    import onnx

    model = onnx.load(str(path))
    props = {"distill.input": INPUT_META, "distill.input_size": "x".join(map(str, spec["input_size"])),
             "distill.output": spec["output"]["kind"], "distill.output_unit": spec["output"]["unit"],
             "distill.output_range": json.dumps(spec["output"]["range"]),
             "distill.input_min_side": str(spec["input"].get("min_side", "")),
             "distill.int8": json.dumps(spec["int8"])}
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, **props})
    onnx.save(model, str(path))
