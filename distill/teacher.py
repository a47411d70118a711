"""Loading the user's teacher, and what it is: input size, normalisation, output kind.

Six ways in (`--teacher`):
  * a Hugging Face depth model: a folder written by save_pretrained, or a hub id (distill/hf_teacher.py);
    its normalisation, input rules and output kind come from its own configs;
  * a torch.export program (`teacher.pt2` from torch.export.save; distill/exported.py): the
    format PyTorch recommends, and the full method works through it;
  * a TorchScript file (`model.pt` from torch.jit.save): plain KD (its BatchNorm layers cannot be
    hooked);
  * an ONNX file (`model.onnx`, run by onnxruntime; distill/onnx_teacher.py): plain KD, since no
    gradient comes back through onnxruntime to the transformation network;
  * `package.module:factory` plus `--teacher-weights state_dict.pt`: the factory builds the model;
  * a checkpoint of this project (`distill fit-teacher` or `distill train` output): its
    architecture and description travel with it.
The teacher is frozen and in eval mode. Its forward takes an image batch (B x 3 x H x W) after the
description's normalisation and returns depth-like output (B x 1 x h x w, B x h x w, or a tuple /
dict holding that: the first, or the one --teacher-output-key names); it is resized to the input size.
What the output means is the spec's `output` kind (OUTPUT_KINDS); the KD loss follows from it.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from simgen.options import ConfigError, Size, as_size, check_fields, option, parse_size, swapped_hint
from simgen.runs import sha256_file

# what a teacher's output means, and so how the KD loss compares the student with it
OUTPUT_KINDS = {
    "metric": "depth in metres (x --teacher-scale if given)",
    "inverse": "inverse depth in 1/m: depth = --teacher-scale (default 1) / output",
    "disparity": "disparity with a known scale: depth = --teacher-scale / output (e.g. focal x baseline); "
                 "--teacher-scale is required",
    "relative": "relative inverse depth, up to scale and shift (MiDaS, Depth Anything): "
                "scale-and-shift-invariant KD on inverse depth",
    "relative-depth": "relative depth, up to scale and shift: scale-and-shift-invariant KD on depth",
}
RELATIVE_KINDS = ("relative", "relative-depth")
# what a student's depth means, by its teacher's output kind: metres, or (a relative teacher's student) up to
# scale and shift, its inverse for "relative" (checkpoint's `output`; eval aligns it, export says it)
STUDENT_OUTPUTS = {"metric": "metric", "inverse": "metric", "disparity": "metric", "relative": "relative",
                   "relative-depth": "relative-depth"}
DEFAULT_INPUT_SIZE = Size(320, 224)  # a teacher file that does not say its size is run at this
# a teacher's output may be smaller than its input (it is resized), but not of another shape
OUTPUT_ASPECT_TOLERANCE = 0.05
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def parse_floats3(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ConfigError(f"must be three comma-separated numbers, got {text!r}")
    return values  # type: ignore[return-value]


class TeacherError(Exception):
    """The teacher cannot be loaded or cannot do what was asked; the message says why."""


@dataclass
class TeacherSpec:
    """What the teacher is. A checkpoint of this project brings its own input size, normalisation
    (inside the model) and output kind: `load_teacher` returns the teacher with those resolved."""

    source: str = option("", ".pt2, TorchScript, ONNX, checkpoint or mod:fn",
                         flag="--teacher")
    weights: str | None = option(None, "state dict for a module:factory teacher", parse=str)
    input_size: Size | None = option(None, "WIDTHxHEIGHT the teacher takes", parse=parse_size,
                                     shown=f"a checkpoint's own, else {DEFAULT_INPUT_SIZE}")
    mean: tuple[float, float, float] | None = option(None, "normalisation mean on [0, 1] RGB", parse=parse_floats3,
                                                     shown="a Hugging Face model's own, else ImageNet")
    std: tuple[float, float, float] | None = option(None, "normalisation std", parse=parse_floats3,
                                                    shown="a Hugging Face model's own, else ImageNet")
    output: str | None = option(None, "what the teacher outputs (docs/distill.md)", choices=tuple(OUTPUT_KINDS),
                                shown="a Hugging Face model's own, else metric")
    run_size: Size | None = option(None, "WIDTHxHEIGHT a Hugging Face model runs at", parse=parse_size,
                                   shown="as its preprocessor resizes", expert=True)
    scale: float | None = option(None, "metric scale of the output", parse=float, shown="1", positive=True)
    output_key: str | None = option(None, "which output of a tuple, list or dict", parse=str, shown="the first")

    def __post_init__(self) -> None:
        from distill.hf_teacher import is_hf_source

        check_fields(self, TeacherError, prefix="teacher-")
        if not is_hf_source(self.source):  # a Hugging Face model's own are read when it loads (hf_teacher.resolved)
            if self.run_size is not None:
                raise TeacherError(f"--teacher-run-size is for Hugging Face teachers; {self.source or 'this teacher'} "
                                   "runs at --teacher-input-size")
            self.mean, self.std = self.mean or IMAGENET_MEAN, self.std or IMAGENET_STD
            self.output = self.output or "metric"
        self.run_size = None if self.run_size is None else as_size(self.run_size)
        if self.output == "disparity" and not self.scale:
            raise TeacherError("--teacher-output disparity needs --teacher-scale (focal length x baseline, so that "
                               "depth = scale / disparity); without a known scale use --teacher-output relative")
        if self.scale is not None and self.output in RELATIVE_KINDS:  # its sign and finiteness: check_fields
            raise TeacherError(f"--teacher-scale {self.scale}: only for metric, inverse or disparity outputs "
                               "(relative outputs have no scale)")
        if self.source and Path(self.source).exists():  # one spelling of a file: resume compares it
            self.source = str(Path(self.source).resolve())
        self.input_size = None if self.input_size is None else as_size(self.input_size)
        self.mean, self.std = (None if v is None else tuple(v) for v in (self.mean, self.std))

    def to_dict(self) -> dict:
        return asdict(self)


class Teacher(nn.Module):
    """Wraps the user's model: normalises [0, 1] images, returns B x 1 x H x W output at input size."""

    def __init__(self, model: nn.Module, spec: TeacherSpec):
        super().__init__()
        self.model, self.spec = model, spec
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "Teacher":  # always frozen, always eval (BN uses running stats)
        return super().train(False)

    def raw_output(self, image: torch.Tensor) -> torch.Tensor:
        """The model's depth-like output as it returns it (B x 1 x h x w), before resizing."""
        returned = self.model((image - self.mean) / self.std)
        out = select_output(returned, self.spec.output_key)
        if out.dim() == 3:
            out = out[:, None]
        if out.dim() != 4 or out.shape[1] != 1:
            several = isinstance(returned, (dict, tuple, list)) and len(returned) > 1
            raise TeacherError(f"teacher output has shape {tuple(out.shape)}; expected B x 1 x H x W or B x H x W"
                               + ("; it returns several outputs: pick the depth one with --teacher-output-key"
                                  if several else ""))
        return out

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.raw_output(image)
        if out.shape[-2:] != image.shape[-2:]:
            out = F.interpolate(out.float(), size=image.shape[-2:], mode="bilinear", align_corners=False)
        return out.float()

    @property
    def relative(self) -> bool:
        return self.spec.output in RELATIVE_KINDS

    def target(self, image: torch.Tensor) -> torch.Tensor:
        """What the KD loss compares the student with: metric depth for metric, inverse and
        disparity outputs; the output itself for relative ones (see `distill.layers.kd_loss`)."""
        out = self.forward(image)
        scale = self.spec.scale or 1.0
        if self.spec.output in ("inverse", "disparity"):
            return scale / out.clamp_min(1e-6)
        return out * scale if self.spec.output == "metric" else out


def select_output(out: Any, key: str | None) -> torch.Tensor:
    """The depth tensor of what a model returned: itself, or one entry of a tuple, list or dict."""
    if isinstance(out, dict):
        keys = list(out)
        if key is None:
            out = out[keys[0]]
        else:
            named = [k for k in keys if str(k) == key]
            if not named:
                raise TeacherError(f"--teacher-output-key {key}: the teacher's outputs are {', '.join(map(str, keys))}")
            out = out[named[0]]
    elif isinstance(out, (tuple, list)):
        index = 0 if key is None else int(key) if key.lstrip("-").isdigit() else None
        if index is None or not -len(out) <= index < len(out):
            raise TeacherError(f"--teacher-output-key {key}: the teacher returns {len(out)} outputs; give an index "
                               f"0-{len(out) - 1}")
        out = out[index]
    if not torch.is_tensor(out):
        raise TeacherError(f"teacher returned {type(out).__name__}, not a tensor; pick its depth output with "
                           "--teacher-output-key")
    return out


def teacher_digest(spec: TeacherSpec) -> str | None:
    """sha256 over the teacher's files (--teacher when it is a file, and --teacher-weights): a run keeps
    it, so that a teacher refitted or re-exported to the same path is told apart from the one the run
    learnt from. None for a teacher that is code only (package.module:factory without weights)."""
    from distill.hf_teacher import hf_digest_files

    files = [Path(f) for f in (spec.source, spec.weights) if f and Path(f).is_file()] + hf_digest_files(spec.source)
    if not files:
        return None
    if len(files) == 1:
        return sha256_file(files[0])
    return hashlib.sha256("".join(sha256_file(f) for f in files).encode()).hexdigest()


def load_teacher(spec: TeacherSpec, device: str | torch.device = "cpu") -> Teacher:
    """The frozen teacher; its `.spec` is `spec` with what the file itself says filled in (the
    caller's spec is not changed)."""
    from distill.hf_teacher import is_hf_source

    src = spec.source
    if not src:
        raise TeacherError("no teacher given: --teacher FILE or package.module:factory")
    path = Path(src)
    if is_hf_source(src):
        model, spec = _load_hf(spec)
    elif path.exists():
        if spec.weights:
            raise TeacherError(f"--teacher-weights is for a package.module:factory teacher; {src} is a file that "
                               "holds its own weights: leave --teacher-weights out")
        model, spec = _load_file(path, spec)
    elif ":" in src and not src.endswith((".pt", ".pth", ".ckpt")):
        model = _load_factory(spec)
    else:
        raise TeacherError(f"--teacher {src}: no such file, and not a package.module:factory")
    if spec.input_size is None:
        spec = replace(spec, input_size=DEFAULT_INPUT_SIZE)
    teacher = Teacher(model, spec).to(device)
    check_teacher(teacher)
    return teacher


def _load_file(path: Path, spec: TeacherSpec) -> tuple[nn.Module, TeacherSpec]:
    from distill.checkpoint import CheckpointError, is_torchscript, load_model, require_model_file
    from distill.exported import ExportError, is_exported_program, load_exported
    from distill.onnx_teacher import is_onnx

    try:
        require_model_file(path)
    except CheckpointError as e:
        raise TeacherError(f"--teacher {e}") from None
    if is_exported_program(path):
        try:
            model, size = load_exported(path)
        except ExportError as e:
            raise TeacherError(str(e)) from None
        if spec.input_size and spec.input_size != size:  # an exported program runs at its own size only
            raise TeacherError(f"--teacher-input-size {spec.input_size}: {path} was exported for {size} inputs"
                               f"{swapped_hint(spec.input_size, size)}; leave the flag out or export it at that size")
        return model, replace(spec, input_size=size)
    if is_torchscript(path):
        return torch.jit.load(str(path), map_location="cpu"), _as_exported(path, spec)
    if path.suffix.lower() == ".onnx":
        model, spec = _load_onnx(path, spec)
        return model, _as_exported(path, spec)
    try:
        model, info = load_model(path)
    except CheckpointError as e:
        if is_onnx(path):
            return _load_onnx(path, spec)
        raise TeacherError(f"--teacher {e}; for a plain state dict give its builder as --teacher "
                           "package.module:factory and the file as --teacher-weights") from None
    # our models normalise inside and take [0, 1] images; they run at the size they were trained on
    # unless another is asked for
    size = spec.input_size or info.input_size
    if spec.input_size and info.input_size and spec.input_size != info.input_size:
        hint = swapped_hint(spec.input_size, info.input_size)
        if hint:
            raise TeacherError(f"--teacher-input-size {spec.input_size}: the teacher was trained at {info.input_size}{hint}")
        print(f"distill: note: the teacher runs at --teacher-input-size {spec.input_size}; it was trained at "
              f"{info.input_size} (leave the flag out to use that)")
    return model, replace(spec, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), output="metric", input_size=size)


def _load_hf(spec: TeacherSpec) -> tuple[nn.Module, TeacherSpec]:
    from distill.hf_teacher import HFError, load_hf, resolved

    if spec.weights:
        raise TeacherError(f"--teacher-weights is for a package.module:factory teacher; {spec.source} holds its own "
                           "weights: leave --teacher-weights out")
    try:
        model = load_hf(spec.source, spec.run_size)
        return model, resolved(model.desc, spec)
    except HFError as e:
        raise TeacherError(str(e)) from None


def _as_exported(path: Path, spec: TeacherSpec) -> TeacherSpec:
    """A student that `distill export` wrote takes [0, 1] RGB (it normalises inside), outputs metric depth (a
    relative teacher's student: relative inverse depth) and runs at the size it was exported at: read from the
    spec written beside it, when there is one."""
    from distill.export import read_export_spec

    exported = read_export_spec(path)
    if exported is None:
        return spec
    size = exported["input_size"]
    if spec.input_size and spec.input_size != size:
        raise TeacherError(f"--teacher-input-size {spec.input_size}: {path} was exported at {size}"
                           f"{swapped_hint(spec.input_size, size)}; leave the flag out")
    return replace(spec, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), output=exported.get("student_output", "metric"),
                   input_size=size)


def _load_onnx(path: Path, spec: TeacherSpec) -> tuple[nn.Module, TeacherSpec]:
    from distill.onnx_teacher import OnnxError, load_onnx

    try:
        model, size = load_onnx(path)
    except OnnxError as e:
        raise TeacherError(str(e)) from None
    if size and spec.input_size and spec.input_size != size:
        raise TeacherError(f"--teacher-input-size {spec.input_size}: {path} was exported for {size} inputs"
                           f"{swapped_hint(spec.input_size, size)}; leave the flag out or export it with dynamic axes")
    return model, replace(spec, input_size=spec.input_size or size)


def _load_factory(spec: TeacherSpec) -> nn.Module:
    module_name, _, attr = spec.source.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise TeacherError(f"--teacher {spec.source}: cannot import ({e})") from None
    if not callable(factory):
        raise TeacherError(f"--teacher {spec.source}: not a model factory (a callable returning a torch.nn.Module)")
    try:
        model = factory()
    except Exception as e:
        raise TeacherError(f"--teacher {spec.source}: the factory raised {type(e).__name__}: {e}") from None
    if not isinstance(model, nn.Module):
        raise TeacherError(f"--teacher {spec.source}: the factory returned a {type(model).__name__}, not a "
                           "torch.nn.Module")
    if spec.weights:
        try:
            state = torch.load(spec.weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
        except Exception as e:
            raise TeacherError(f"--teacher-weights {spec.weights}: does not fit {spec.source} ({e})") from None
    return model


def check_teacher(teacher: Teacher) -> None:
    """One forward pass at the input size: the output must be usable depth."""
    h, w = teacher.spec.input_size.hw
    device = teacher.mean.device
    # its own generator: checking the teacher does not move the global RNG that initialises the student
    probe = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)
    try:
        with torch.no_grad():
            out = teacher(probe)
    except TeacherError:
        raise
    except Exception as e:
        # TorchScript puts its traceback into the message: its last line says what went wrong
        lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
        if "channels" in lines[-1]:
            hint = ("distill feeds 3-channel RGB in [0, 1]; wrap a teacher that takes other channels in a "
                    "package.module:factory")
        else:
            hint = f"check --teacher-input-size ({teacher.spec.input_size}, WIDTHxHEIGHT)"
        raise TeacherError(f"teacher failed on a 2 x 3 x {h} x {w} input ({lines[-1]}); {hint}") from None
    with torch.no_grad():
        raw = teacher.raw_output(probe[:1])
    if float(raw.max() - raw.min()) <= 1e-6 * max(1.0, float(raw.abs().max())):
        raise TeacherError(f"teacher output is the same everywhere ({float(raw.flatten()[0]):.3g}) on a random image: "
                           "not a depth map (untrained weights? another output than depth: --teacher-output-key?)")
    if not torch.isfinite(out).all():
        raise TeacherError("teacher output has NaN or inf on a random input")
    if not teacher.relative and (out < 0).any():
        raise TeacherError(f"teacher output has negative values ({float(out.min()):.3g}), which {teacher.spec.output} "
                           "depth cannot be; if it predicts depth up to scale and shift, use --teacher-output relative")
    oh, ow = raw.shape[-2:]
    if abs((oh / ow) / (h / w) - 1) > OUTPUT_ASPECT_TOLERANCE:
        raise TeacherError(f"teacher output is {ow}x{oh} for a {w}x{h} input: another aspect ratio, so resizing it to "
                           f"the input would distort depth; check --teacher-input-size (WIDTHxHEIGHT)")


def require_batchnorm(teacher: Teacher) -> list[nn.Module]:
    """The teacher's BatchNorm layers the statistics loss hooks; TeacherError says why there are none."""
    from distill.layers import bn_layers
    from distill.onnx_teacher import NO_GRADIENT, OnnxModel

    if isinstance(teacher.model, OnnxModel):
        raise TeacherError(NO_GRADIENT)

    layers = bn_layers(teacher.model)
    hidden = sum(1 for m in teacher.model.modules() if "BatchNorm" in getattr(m, "original_name", ""))
    if not layers and isinstance(teacher.model, torch.jit.ScriptModule) and hidden:
        raise TeacherError(f"the TorchScript teacher has {hidden} BatchNorm layers, but a loaded TorchScript module "
                           "cannot be hooked, so the "
                           "statistics loss of the transformation network cannot see them. Save the Python model "
                           "with torch.export instead: torch.export.save(torch.export.export(model.eval(), "
                           "(torch.rand(2, 3, H, W),), dynamic_shapes=({0: torch.export.Dim('batch')},)), "
                           "'teacher.pt2'); or run with --transform off (plain KD)")
    if not layers:
        norms = sorted({type(m).__name__ for m in teacher.model.modules() if "Norm" in type(m).__name__})
        raise TeacherError("the teacher has no BatchNorm layers with running statistics"
                           + (f" (its norm layers: {', '.join(norms)})" if norms else "")
                           + ", so the statistics loss of the transformation network cannot be computed; run with "
                           "--transform off (plain KD)")
    return layers
