"""Hugging Face depth models as teachers: a folder written by `save_pretrained`, or a hub id.

Every depth model of transformers loads with AutoModelForDepthEstimation and returns
`predicted_depth` (B x H x W). What it means and what input it takes differ; both are read from
the model's own config.json and preprocessor_config.json (`describe`), and the flags override them:

    model_type       output                                      input it needs
    depth_anything   relative disparity, or metres (metric)      multiple of 14 (DINOv2)
    dpt              relative inverse depth; metres with DINOv2  square (ViT), its image_size (hybrid), x14
    glpn             metres (sigmoid x max_depth)                multiple of 32
    zoedepth         metres                                      multiple of its patch (and the preprocessor's)
    depth_pro        inverse depth + field of view -> metres     its one size (patch_size / smallest ratio)

`HFDepthModel` runs the model the way its preprocessor would (resize, ZoeDepth's reflect padding) at
the "run size" its rules give for the image it gets, and returns depth at the image's own size: a
student is distilled at whatever size the user asks for. transformers is optional (the `hf` extra);
it works without torchvision, and a torchvision built for another torch breaks its imports.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from simgen.options import Size

# what a Hugging Face id looks like (ORG/NAME); a path that exists is never taken for one
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
MODEL_FILE_SUFFIXES = (".pt", ".pth", ".pt2", ".onnx", ".ckpt", ".ts", ".safetensors", ".bin", ".json")
HUB_PROBE_TIMEOUT = 5.0  # seconds to reach the hub before a hub id is called unreachable (its own retries take 25 s)
INSTALL_HINT = "pip install -e '.[hf]' (transformers; torchvision is not needed)"
# DPT's preprocessor (shared by depth_anything): used where preprocessor_config.json does not say
DPT_PREPROCESSOR = {"size": {"height": 384, "width": 384}, "keep_aspect_ratio": False, "ensure_multiple_of": 1,
                    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_normalize": True}
PREPROCESSOR_DEFAULTS = {
    "depth_anything": DPT_PREPROCESSOR,
    "dpt": DPT_PREPROCESSOR,
    "glpn": {"size_divisor": 32, "do_normalize": False},
    "zoedepth": {**DPT_PREPROCESSOR, "size": {"height": 384, "width": 512}, "keep_aspect_ratio": True,
                 "ensure_multiple_of": 32, "do_pad": True},
    "depth_pro": {**DPT_PREPROCESSOR, "size": {"height": 1536, "width": 1536}},
}
NAMES = {"depth_anything": "Depth Anything", "dpt": "DPT", "glpn": "GLPN", "zoedepth": "ZoeDepth",
         "depth_pro": "DepthPro"}


class HFError(Exception):
    """A Hugging Face teacher that cannot be loaded or run as asked; the message says what to do."""


@dataclass(frozen=True)
class HFDescription:
    """What a Hugging Face depth model is, from its config and preprocessor config."""

    model_type: str
    output: str | None              # a distill.teacher.OUTPUT_KINDS key; None: unknown (the flag must say)
    meaning: str                    # the output in words, for teacher-check
    max_depth: float | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    size: tuple[int, int] | None    # (h, w) the preprocessor resizes to; None: keeps the image's size
    keep_aspect: bool
    multiple: int                   # run sizes are multiples of this
    fixed: tuple[int, int] | None   # the one (h, w) the model takes
    square: bool                    # only square inputs
    pad: bool                       # ZoeDepth's reflect padding
    fov_to_metres: bool             # DepthPro: inverse depth and field of view -> metres

    def rules(self) -> str:
        """The input rules in words."""
        if self.fixed:
            return f"only {self.fixed[1]}x{self.fixed[0]}"
        parts = [f"multiples of {self.multiple}"] if self.multiple > 1 else []
        if self.square:
            parts.append("square")
        if self.size:
            parts.append(f"resized to {self.size[1]}x{self.size[0]}" + (" keeping the aspect ratio" if self.keep_aspect else ""))
        if self.pad:
            parts.append("reflect-padded")
        return ", ".join(parts) or "any size"


def is_hf_source(source: str) -> bool:
    """--teacher names a Hugging Face model: a folder, or ORG/NAME that is no path here."""
    if not source:
        return False
    path = Path(source)
    if path.is_dir():  # a run folder of this project (config.json without model_type, student.pt) is not one
        return not any(path.glob("*.pt")) or "model_type" in _json_or_empty(path / "config.json")
    return not path.exists() and bool(HUB_ID.match(source)) and not source.lower().endswith(MODEL_FILE_SUFFIXES)


def _json_or_empty(path: Path) -> dict:
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def import_transformers() -> Any:
    """transformers, or HFError saying how to install it or which package breaks it."""
    try:
        import transformers
    except ImportError as e:
        if _mentions_torchvision(e):
            raise HFError(_TORCHVISION) from None
        raise HFError(f"a Hugging Face teacher needs transformers: {INSTALL_HINT}") from None
    return transformers


_TORCHVISION = ("transformers cannot import its depth models: the installed torchvision was built for another torch "
                "(PyPI's wheel is a CUDA build) and breaks them; distill does not need it: pip uninstall torchvision")


def _mentions_torchvision(error: BaseException | None) -> bool:
    """Whether an error or one it came from names torchvision (transformers' lazy imports wrap the cause)."""
    while error is not None:
        if "torchvision" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def _require_reachable(source: str) -> None:
    """A hub id not in the local cache needs the hub: say at once when it cannot be reached."""
    hint = (f"--teacher {source}: no such folder here, and the Hugging Face hub cannot be reached (offline?). On a "
            f"machine that is online run `hf download {source} --local-dir teachers/{source.split('/')[-1]}` "
            "(or save_pretrained the model and its image processor into a folder), then give that folder as --teacher")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise HFError(hint)
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=HUB_PROBE_TIMEOUT).close()
    except OSError:
        raise HFError(hint) from None


def _read_config(source: str) -> tuple[dict, dict]:
    """config.json and preprocessor_config.json (empty when there is none) as dicts."""
    transformers = import_transformers()
    path = Path(source)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise HFError(f"--teacher {source}: a folder without config.json; a Hugging Face model folder is what "
                          "save_pretrained (or `hf download ORG/NAME --local-dir DIR`) writes: config.json and the "
                          "weights")
        config = json.loads((path / "config.json").read_text())
        pre = path / "preprocessor_config.json"
        return config, json.loads(pre.read_text()) if pre.is_file() else {}
    cached = transformers.utils.cached_file
    try:
        local = cached(source, "config.json", local_files_only=True)
    except OSError:
        local = None
    if local is None:
        _require_reachable(source)
    try:
        config = json.loads(Path(cached(source, "config.json")).read_text())
        pre = cached(source, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False)
    except OSError as e:
        raise HFError(f"--teacher {source}: {str(e).splitlines()[0]}") from None
    return config, json.loads(Path(pre).read_text()) if pre else {}


def _backbone_type(config: dict) -> str | None:
    backbone = config.get("backbone_config") or {}
    return backbone.get("model_type") if isinstance(backbone, dict) else None


def _as_hw(size: Any) -> tuple[int, int]:
    return (int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) else (int(size), int(size))


def _output(config: dict) -> tuple[str | None, str, float | None]:
    """The output kind, in words, and the largest depth where the config says."""
    kind = config.get("model_type")
    if kind == "depth_anything":
        if config.get("depth_estimation_type") == "metric":
            return "metric", f"metres (metric head, max_depth {config.get('max_depth')})", config.get("max_depth")
        return "relative", "relative disparity: inverse depth up to scale and shift", None
    if kind == "dpt":
        if _backbone_type(config) == "dinov2":
            return "metric", "metres (DPT-DINOv2, fine-tuned on a metric dataset)", None
        return "relative", "relative inverse depth (MiDaS-style): up to scale and shift", None
    if kind == "glpn":
        return "metric", f"metres (sigmoid x max_depth {config.get('max_depth', 10)})", config.get("max_depth", 10)
    if kind == "zoedepth":
        bins = config.get("bin_configurations") or [{}]
        return "metric", "metres (metric bins)", max((b.get("max_depth") or 0 for b in bins), default=None) or None
    if kind == "depth_pro":
        if config.get("use_fov_model"):
            return "metric", "metres: its inverse depth scaled by its predicted field of view", None
        return "relative", "inverse depth without a field-of-view head: relative", None
    return None, "not known to distill: say it with --teacher-output", None


def _model_rules(config: dict) -> tuple[int, tuple[int, int] | None, bool]:
    """(multiple, fixed (h, w), square) the network itself needs, whatever its preprocessor does."""
    kind, backbone = config.get("model_type"), config.get("backbone_config") or {}
    if _backbone_type(config) == "dinov2":
        return int(backbone.get("patch_size", 14)), None, False
    if kind == "dpt":
        if config.get("is_hybrid"):
            return 1, _as_hw(config.get("image_size", 384)), False
        return int(config.get("patch_size", 16)), None, True
    if kind == "glpn":
        return 32, None, False
    if kind == "zoedepth":
        return int(backbone.get("patch_size", 16)), None, False
    if kind == "depth_pro":
        side = int(_as_hw(config.get("patch_size", 384))[0] / min(config.get("scaled_images_ratios", (0.25, 0.5, 1))))
        return 1, (side, side), False
    return 1, None, False


def describe(config: dict, pre: dict) -> HFDescription:
    """The teacher's description from its config.json and preprocessor_config.json (as dicts)."""
    kind = str(config.get("model_type"))
    p = {**PREPROCESSOR_DEFAULTS.get(kind, DPT_PREPROCESSOR), **pre}
    normalise = p.get("do_normalize", True)
    mean = tuple(float(v) for v in p.get("image_mean", (0.5,) * 3)) if normalise else (0.0, 0.0, 0.0)
    std = tuple(float(v) for v in p.get("image_std", (0.5,) * 3)) if normalise else (1.0, 1.0, 1.0)
    size = p.get("size") if p.get("do_resize", True) and "size_divisor" not in p else None
    if isinstance(size, dict):
        size = ((size["height"], size["width"]) if "height" in size else
                (size.get("shortest_edge"),) * 2 if size.get("shortest_edge") else None)
    multiple, fixed, square = _model_rules(config)
    wanted = p.get("size_divisor") or p.get("ensure_multiple_of") or 1
    multiple = math.lcm(multiple, max(1, int(wanted)))  # ZoeDepth's class default is 1/32: read as 1
    output, meaning, max_depth = _output(config)
    return HFDescription(kind, output, meaning, max_depth, mean, std, _as_hw(size) if size else None,
                         bool(p.get("keep_aspect_ratio")), multiple, fixed, square, bool(p.get("do_pad")) and
                         kind == "zoedepth", kind == "depth_pro" and bool(config.get("use_fov_model")))


def _to_multiple(value: float, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)


class HFDepthModel(nn.Module):
    """A transformers depth model as a teacher: normalised images in (any size), depth-like output
    (B x 1 x H x W) at the images' size out, run at the size the model's rules give."""

    def __init__(self, model: nn.Module, desc: HFDescription, run_size: Size | None = None):
        super().__init__()
        self.model, self.desc, self.run_size = model, desc, run_size

    def run_hw(self, h: int, w: int) -> tuple[int, int]:
        """The (h, w) the model runs at for an (h, w) image, as its preprocessor would resize it."""
        d = self.desc
        if self.run_size is not None:
            return self.run_size.hw
        if d.fixed:
            return d.fixed
        if d.size:
            sh, sw = d.size[0] / h, d.size[1] / w
            if d.keep_aspect:  # scale as little as possible, as the preprocessor does
                sh = sw = sw if abs(1 - sw) < abs(1 - sh) else sh
            h, w = sh * h, sw * w
        else:  # GLPN: the image's own size, rounded down
            h, w = max(d.multiple, h // d.multiple * d.multiple), max(d.multiple, w // d.multiple * d.multiple)
        if d.square:
            h = w = max(h, w)
        return _to_multiple(h, d.multiple), _to_multiple(w, d.multiple)

    def padding(self, h: int, w: int) -> tuple[int, int]:
        """ZoeDepth's preprocessor pads by 3 sqrt(side / 2) on each side, and its post-processing crops it off."""
        return (int(math.sqrt(h / 2) * 3), int(math.sqrt(w / 2) * 3)) if self.desc.pad else (0, 0)

    def size_for(self, h: int, w: int) -> tuple[int, int]:
        """The (h, w) the model runs at for an (h, w) image, padding included."""
        ph, pw = self.padding(h, w)
        return self.run_hw(h + 2 * ph, w + 2 * pw)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h0, w0 = image.shape[-2:]
        ph, pw = self.padding(h0, w0)
        if ph or pw:
            image = F.pad(image, (pw, pw, ph, ph), mode="reflect")
        hw = self.run_hw(*image.shape[-2:])
        if tuple(image.shape[-2:]) != hw:
            image = F.interpolate(image, size=hw, mode="bilinear", align_corners=False, antialias=True)
        out = self.model(pixel_values=image)
        depth = out.predicted_depth
        depth = depth[:, None] if depth.dim() == 3 else depth
        fov = getattr(out, "field_of_view", None)
        if self.desc.fov_to_metres and fov is not None:  # as DepthPro's post-processing: width / focal = 2 tan(fov / 2)
            ratio = 2 * torch.tan(torch.deg2rad(fov.float().view(-1, 1, 1, 1)) / 2)
            depth = 1.0 / (depth * ratio).clamp(1e-4, 1e4)
        depth = F.interpolate(depth, size=(h0 + 2 * ph, w0 + 2 * pw), mode="bilinear", align_corners=False)
        return depth[..., ph:ph + h0, pw:pw + w0]


def check_run_size(desc: HFDescription, size: Size) -> None:
    """HFError when the model cannot run at --teacher-run-size."""
    name, (h, w) = NAMES.get(desc.model_type, desc.model_type), size.hw
    if desc.fixed and (h, w) != desc.fixed:
        raise HFError(f"--teacher-run-size {size}: {name} runs at {desc.fixed[1]}x{desc.fixed[0]} only; leave the flag "
                      "out (images of any size are resized to it)")
    if desc.square and h != w:
        raise HFError(f"--teacher-run-size {size}: this {name} (plain ViT) takes square inputs only, e.g. "
                      f"{_to_multiple(max(h, w), desc.multiple)}x{_to_multiple(max(h, w), desc.multiple)}")
    if h % desc.multiple or w % desc.multiple:
        m = desc.multiple
        raise HFError(f"--teacher-run-size {size}: {name} takes multiples of {m}; e.g. "
                      f"{_to_multiple(w, m)}x{_to_multiple(h, m)}")


def hf_digest_files(source: str) -> list[Path]:
    """The files that make a Hugging Face folder's model (a run records their sha256); none for a hub id."""
    folder = Path(source)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and
                  (p.name in ("config.json", "preprocessor_config.json") or p.suffix in (".safetensors", ".bin")))


def load_hf(source: str, run_size: Size | None) -> HFDepthModel:
    """The model of a folder or hub id, wrapped; HFError (one line) for what cannot work."""
    config, pre = _read_config(source)
    transformers = import_transformers()
    from transformers.models.auto.modeling_auto import MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES as DEPTH_MODELS

    kind = config.get("model_type")
    if kind not in DEPTH_MODELS:
        raise HFError(f"--teacher {source}: a {kind} model, not a depth estimator (transformers' depth models: "
                      f"{', '.join(sorted(DEPTH_MODELS))})")
    desc = describe(config, pre)
    if run_size is not None:
        check_run_size(desc, run_size)
    transformers.utils.logging.disable_progress_bar()  # its per-load bars; distill says what it loaded
    try:
        model = transformers.AutoModelForDepthEstimation.from_pretrained(source)
    except Exception as e:  # a broken torchvision surfaces here, as the lazily imported model class fails
        if _mentions_torchvision(e):
            raise HFError(_TORCHVISION) from None
        if not isinstance(e, (OSError, ValueError)):
            raise
        raise HFError(f"--teacher {source}: cannot load the model ({str(e).splitlines()[0]})") from None
    return HFDepthModel(model.float().eval(), desc, run_size)


def resolved(desc: HFDescription, spec: Any) -> Any:
    """The TeacherSpec with what the model's configs say where no flag said otherwise."""
    if spec.output is None and desc.output is None:
        raise HFError(f"--teacher {spec.source}: distill does not know what a {desc.model_type} model outputs; say it "
                      "with --teacher-output (metric, inverse, relative, ...)")
    return replace(spec, mean=spec.mean or desc.mean, std=spec.std or desc.std, output=spec.output or desc.output)
