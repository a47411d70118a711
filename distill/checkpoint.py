"""Model checkpoints: the one place that writes and reads them.

A checkpoint is a torch.save'd dict:

    version      CHECKPOINT_VERSION (absent in version-1 files, which still load)
    model_arch   a name of distill.networks.ARCHITECTURES
    model        the state dict (plain, contiguous layout)
    model_range  {"min_depth": m, "max_depth": m}: the output range the model was built with
    output       what its depth means: "metric" (metres; absent in older files), or "relative" /
                 "relative-depth" for the student of a relative teacher (up to scale and shift; "relative":
                 its inverse is)
    input_size   [width, height] it was trained at (version 1 stored [height, width])
    ...          whatever the writer adds: the run's config, optimiser and RNG states for --resume

`distill fit-teacher` and `distill train` write them; `distill eval`, `export`, `train --teacher`
read them. Exported TorchScript models (`distill export`) carry the same size in a JSON beside them.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from distill.runtime import contiguous_state
from simgen.options import Size, as_size

CHECKPOINT_VERSION = 2


class CheckpointError(Exception):
    """A file that is not a readable checkpoint of this project; the message says what it is."""


@dataclass(frozen=True)
class ModelInfo:
    """What a checkpoint says about its model."""

    arch: str | None                 # None for an exported TorchScript model
    input_size: Size | None
    min_depth: float = 0.1
    max_depth: float = 10.0
    output: str = "metric"           # distill.teacher.STUDENT_OUTPUTS: what its depth means


# below this much free space a failed checkpoint write is reported as a full disk (a checkpoint of the
# project's models is 20-200 MB)
FULL_DISK_BYTES = 256 * 2 ** 20


def save_checkpoint(path: str | Path, model: torch.nn.Module, arch: str, input_size: Size, min_depth: float,
                    max_depth: float, **extra: Any) -> None:
    """Write atomically (a temporary file renamed when complete): a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"version": CHECKPOINT_VERSION, "model_arch": arch, "model": contiguous_state(model.state_dict()),
             "model_range": {"min_depth": float(min_depth), "max_depth": float(max_depth)},
             "input_size": list(as_size(input_size)), **extra}
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; give the checkpoint's file name")
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch reports a full disk or a missing folder as RuntimeError
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"{path}: cannot write the checkpoint ({_write_failure(e, path.parent)})") from None


def _write_failure(e: BaseException, folder: Path) -> str:
    """Why a write failed, in words: torch's zip writer reports a full disk as "[enforce fail at
    inline_container.cc...]", so the free space is asked."""
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return "no space left on device"
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if free is not None and free < FULL_DISK_BYTES:
        return f"no space left on device: {free // 2 ** 20} MiB free in {folder}"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def require_model_file(path: str | Path) -> Path:
    """`path` as a file; a run directory (of distill train) is named by the student file inside it."""
    path = Path(path)
    if path.is_dir():
        inside = [p for p in ("student.pt", "checkpoint.pt") if (path / p).is_file()]
        hint = f": give the model file inside it, {path / inside[0]}" if inside else " (give a model file)"
        raise CheckpointError(f"{path} is a directory{hint}")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    return path


def _safe_globals() -> list[Any]:
    """What a checkpoint of this project holds beyond tensors and plain data: sizes (Size) and, in a training
    checkpoint, numpy's RNG state (an array). None of them runs code when loaded."""
    import numpy as np

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    return [Size, multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint dict, upgraded to the current version; a clear error for anything else."""
    path = require_model_file(path)
    try:  # weights only: tensors, plain data and the few types below; a pickle that would run code is refused
        with torch.serialization.safe_globals(_safe_globals()):
            ckpt = torch.load(str(path), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        refused = re.search(r"GLOBAL (\S+)", str(e))
        if not refused:  # not a pickle of ours at all (bytes of another format)
            why = re.search(r"Unsupported [^\n]*", str(e))
            raise CheckpointError(f"{path}: not a checkpoint ({why.group(0) if why else 'unreadable'})") from None
        raise CheckpointError(f"{path}: refused: it holds Python objects that could run code when loaded"
                              + (f" ({refused.group(1)})" if refused else "") + "; a checkpoint of this project "
                              "holds tensors and plain data only") from None
    except Exception as e:
        raise CheckpointError(f"{path}: not a checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if not isinstance(ckpt, dict) or "model_arch" not in ckpt:
        raise CheckpointError(f"{path}: not a checkpoint of this project (no model_arch; a plain state dict?)")
    version = ckpt.get("version", 1)
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {version}; this distill reads up to {CHECKPOINT_VERSION}")
    if version == 1:  # version 1 stored sizes as [height, width]
        _flip_size(ckpt)
        _flip_size(ckpt.get("teacher_spec"))
        _flip_size(ckpt.get("fit_config"))
        _flip_size((ckpt.get("config") or {}).get("teacher"))
    ckpt["version"] = CHECKPOINT_VERSION
    return ckpt


def _flip_size(d: dict[str, Any] | None) -> None:
    if d and d.get("input_size"):
        d["input_size"] = [d["input_size"][1], d["input_size"][0]]


def model_info(ckpt: dict[str, Any]) -> ModelInfo:
    size = as_size(ckpt["input_size"]) if ckpt.get("input_size") else None
    return ModelInfo(ckpt["model_arch"], size, output=ckpt.get("output", "metric"), **ckpt.get("model_range", {}))


def build_model(ckpt: dict[str, Any]) -> torch.nn.Module:
    """The checkpoint's network with its weights, in eval mode."""
    from distill.networks import build_depth_model

    info = model_info(ckpt)
    model = build_depth_model(info.arch, info.min_depth, info.max_depth)
    model.load_state_dict(ckpt["model"])
    return model.eval()


def is_torchscript(path: str | Path) -> bool:
    """TorchScript archives are zip files holding a constants.pkl (torch.save files do not)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(name.endswith("/constants.pkl") for name in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, ModelInfo]:
    """A checkpoint of this project, or a student that `distill export` wrote (TorchScript, or ONNX run by
    onnxruntime): the model (image in [0, 1] -> depth, eval mode) and what is known about it."""
    path = require_model_file(path)
    exported = _load_export(path, device)
    if exported is not None:
        return exported
    try:
        ckpt = read_checkpoint(path, map_location="cpu")
    except CheckpointError:
        _refuse_other_formats(path)
        raise
    return build_model(ckpt).to(device), model_info(ckpt)


def _load_export(path: Path, device: str | torch.device) -> tuple[torch.nn.Module, ModelInfo] | None:
    """A TorchScript file, or an ONNX file with the spec `distill export` writes beside it; None otherwise."""
    from distill.export import Reciprocal, read_export_spec

    spec = read_export_spec(path) or {}
    if is_torchscript(path):
        model = torch.jit.load(str(path), map_location=device).eval()
    elif path.suffix.lower() == ".onnx" and spec:
        from distill.onnx_teacher import OnnxModel

        model = OnnxModel(path)
    else:
        return None
    output = spec.get("student_output", "metric")
    if output == "relative":  # exported as inverse depth: turned back into the checkpoint's depth
        model = Reciprocal(model)
    return model, ModelInfo(None, spec.get("input_size"), output=output)


def _refuse_other_formats(path: Path) -> None:
    """A model file of a format that eval and export do not take, said by name (else nothing)."""
    from distill.exported import is_exported_program
    from distill.onnx_teacher import is_onnx

    for kind, test in (("an ONNX model", is_onnx), ("a torch.export program (.pt2)", is_exported_program)):
        if test(path):
            raise CheckpointError(f"{path} is {kind}: eval and export take a checkpoint of this project (distill train "
                                  "or fit-teacher) or an export of one (with its NAME.EXT.json beside it); train "
                                  "takes it as --teacher")
