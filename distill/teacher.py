"""Loading the user's teacher, and what it is: input size, normalisation, output kind.

Three ways in (`--teacher`):
  * a TorchScript file (`model.pt` from torch.jit.save);
  * `package.module:factory` plus `--teacher-weights state_dict.pt`: the factory builds the model;
  * a checkpoint of this project (`distill fit-teacher` or `distill train` output): its
    architecture and description travel with it.
The teacher is frozen and in eval mode. Its forward takes an image batch (B x 3 x H x W) after the
description's normalisation and returns depth-like output (B x 1 x h x w, B x h x w, or a tuple /
dict whose first tensor is that); it is resized to the input size.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

OUTPUT_KINDS = ("metric", "inverse", "relative")


class TeacherError(Exception):
    """The teacher cannot be loaded or cannot do what was asked; the message says why."""


@dataclass
class TeacherSpec:
    source: str                                  # path to .pt/.ckpt, or package.module:factory
    weights: str | None = None                   # state dict for a factory
    input_size: tuple[int, int] = (224, 320)     # H, W the teacher expects
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # normalisation applied before the teacher
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    output: str = "metric"                       # metric depth (m) | inverse depth | relative (up to scale/shift)
    extra: dict = field(default_factory=dict)

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

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.model((image - self.mean) / self.std)
        if isinstance(out, dict):
            out = next(iter(out.values()))
        if isinstance(out, (tuple, list)):
            out = out[0]
        if not torch.is_tensor(out):
            raise TeacherError(f"teacher returned {type(out).__name__}, not a tensor")
        if out.dim() == 3:
            out = out[:, None]
        if out.dim() != 4 or out.shape[1] != 1:
            raise TeacherError(f"teacher output has shape {tuple(out.shape)}; expected B x 1 x H x W or B x H x W")
        if out.shape[-2:] != image.shape[-2:]:
            out = F.interpolate(out.float(), size=image.shape[-2:], mode="bilinear", align_corners=False)
        return out.float()

    def depth(self, image: torch.Tensor) -> torch.Tensor:
        """Output as positive depth-like values for the KD loss (metric or up to scale)."""
        out = self.forward(image)
        if self.spec.output == "inverse":
            return 1.0 / out.clamp_min(1e-6)
        return out


def load_teacher(spec: TeacherSpec, device: str | torch.device = "cpu") -> Teacher:
    if spec.output not in OUTPUT_KINDS:
        raise TeacherError(f"unknown teacher output kind {spec.output!r}; choose one of {', '.join(OUTPUT_KINDS)}")
    src = spec.source
    path = Path(src)
    if path.exists():
        model = _load_file(path, spec)
    elif ":" in src and not src.endswith((".pt", ".pth", ".ckpt")):
        model = _load_factory(spec)
    else:
        raise TeacherError(f"--teacher {src}: no such file, and not a package.module:factory")
    teacher = Teacher(model, spec).to(device)
    check_teacher(teacher)
    return teacher


def _load_file(path: Path, spec: TeacherSpec) -> nn.Module:
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except RuntimeError:
        pass  # not TorchScript: maybe a checkpoint of ours
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as e:
        raise TeacherError(f"--teacher {path}: neither TorchScript nor a checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or "model_arch" not in ckpt:
        raise TeacherError(f"--teacher {path}: a plain state dict; give its builder as package.module:factory "
                           "and this file as --teacher-weights")
    from distill.networks import build_depth_model

    model = build_depth_model(ckpt["model_arch"], **ckpt.get("model_range", {}))
    model.load_state_dict(ckpt["model"])
    # our models normalise inside and take [0, 1] images at the size they were trained on
    spec.mean, spec.std, spec.output = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "metric"
    if "input_size" in ckpt:
        spec.input_size = tuple(ckpt["input_size"])
    return model


def _load_factory(spec: TeacherSpec) -> nn.Module:
    module_name, _, attr = spec.source.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise TeacherError(f"--teacher {spec.source}: cannot import ({e})") from None
    model = factory()
    if spec.weights:
        try:
            state = torch.load(spec.weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
        except Exception as e:
            raise TeacherError(f"--teacher-weights {spec.weights}: does not fit {spec.source} ({e})") from None
    return model


def check_teacher(teacher: Teacher) -> None:
    """One forward pass at the input size: the output must be usable depth."""
    h, w = teacher.spec.input_size
    device = teacher.mean.device
    try:
        with torch.no_grad():
            out = teacher(torch.rand(2, 3, h, w, device=device))
    except TeacherError:
        raise
    except Exception as e:
        raise TeacherError(f"teacher failed on a 2 x 3 x {h} x {w} input ({type(e).__name__}: {e}); "
                           "check --teacher-input-size") from None
    if not torch.isfinite(out).all():
        raise TeacherError("teacher output has NaN or inf on a random input")


def require_batchnorm(teacher: Teacher) -> list[nn.Module]:
    from distill.layers import bn_layers

    layers = bn_layers(teacher.model)
    if not layers:
        raise TeacherError("the teacher has no BatchNorm layers with running statistics, so the statistics loss "
                           "of the transformation network cannot be computed; run with --transform off (plain KD)")
    return layers
