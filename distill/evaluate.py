"""Evaluation: standard depth metrics per image, averaged overall and per scene; a picture grid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from distill.data import RGBDFolder
from distill.layers import METRIC_NAMES, align_prediction, compute_depth_errors, eval_mask
from distill.runtime import autocast, resolve_precision


def load_model_for_eval(path: str, device: torch.device) -> tuple[torch.nn.Module, tuple[int, int] | None]:
    """A student/teacher checkpoint of this project, or an exported TorchScript model.
    Returns the model (image in [0, 1] -> metric depth) and its input size if known."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"--model {path}: no such file")
    try:
        model = torch.jit.load(path, map_location=device)
        meta = Path(path).with_suffix(".json")
        size = tuple(json.loads(meta.read_text())["input_size"]) if meta.exists() else None
        return model.eval(), size
    except RuntimeError:
        pass
    try:
        ckpt = torch.load(path, map_location=device, weights_only=False)
    except Exception as e:
        raise ValueError(f"--model {path}: neither TorchScript nor a checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or "model_arch" not in ckpt:
        raise ValueError(f"--model {path}: not a checkpoint of this project (no model_arch)")
    from distill.networks import build_depth_model

    model = build_depth_model(ckpt["model_arch"], **ckpt.get("model_range", {}))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), tuple(ckpt["input_size"]) if "input_size" in ckpt else None


@torch.no_grad()
def predict(model: torch.nn.Module, rgb: torch.Tensor, size: tuple[int, int], precision: str = "fp32") -> torch.Tensor:
    """Resize the image to the model's input size, predict (under bf16 autocast with precision
    'bf16'), resize depth back (B x 1 x H x W, fp32)."""
    h, w = rgb.shape[-2:]
    x = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False) if (h, w) != tuple(size) else rgb
    with autocast(rgb.device, precision):
        pred = model(x).float()
    return F.interpolate(pred, size=(h, w), mode="bilinear", align_corners=False) if pred.shape[-2:] != (h, w) else pred


def evaluate_model(model: torch.nn.Module, data: str | Path, size: tuple[int, int], device: torch.device,
                   protocol: str = "nyu", align: str = "none", depth_scale: float = 1000.0, split: str | None = "test",
                   grid_path: str | Path | None = None, grid_count: int = 6, precision: str = "auto") -> dict[str, Any]:
    """Metrics of `model` on RGB-D data; `precision` auto | fp32 | bf16 (distill/runtime.py)."""
    precision = resolve_precision(precision, device)
    ds = RGBDFolder(data, depth_scale=depth_scale, split=split)
    model.eval()
    per_image, rows = [], []
    wanted = set(np.linspace(0, len(ds) - 1, min(grid_count, len(ds))).round().astype(int).tolist())
    for i in range(len(ds)):
        item = ds[i]
        rgb = item["rgb"][None].to(device)
        gt = item["depth"][0].to(device)
        pred = predict(model, rgb, size, precision)[0, 0]
        mask = eval_mask(gt, protocol)
        if mask.sum() < 10:
            continue
        p = align_prediction(pred[mask], gt[mask], align).clamp(1e-3, None)
        errors = compute_depth_errors(gt[mask], p)
        per_image.append({"name": item["name"], "scene": item["scene"], **errors})
        if grid_path and i in wanted:
            rows.append(_grid_row(item["rgb"], gt.cpu(), pred.cpu(), mask.cpu()))
    if not per_image:
        raise ValueError(f"{data}: no image had valid ground truth under protocol {protocol!r}")
    overall = {k: float(np.mean([r[k] for r in per_image])) for k in METRIC_NAMES}
    scenes = sorted({r["scene"] for r in per_image if r["scene"]})
    per_scene = {s: {k: float(np.mean([r[k] for r in per_image if r["scene"] == s])) for k in METRIC_NAMES}
                 for s in scenes}
    if grid_path and rows:
        Path(grid_path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.concatenate(rows, 0)).save(grid_path)
    return {"protocol": protocol, "align": align, "precision": precision, "images": len(per_image), "overall": overall,
            "per_scene": per_scene, "per_image": per_image}


def _grid_row(rgb: torch.Tensor, gt: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    from simgen.preview import colorize_depth

    valid = gt[gt > 0]
    lo, hi = (float(valid.min()), float(valid.max())) if valid.numel() else (None, None)
    err = torch.zeros_like(gt)
    err[mask] = (torch.abs(pred[mask] - gt[mask]) / gt[mask]).clamp(0, 0.5) / 0.5
    err_rgb = (np.stack([err.numpy(), 1 - err.numpy(), np.zeros_like(err.numpy())], -1) * 255).astype(np.uint8)
    err_rgb[~mask.numpy()] = 0
    tiles = [(rgb.permute(1, 2, 0).numpy() * 255).astype(np.uint8), colorize_depth(gt.numpy(), lo, hi),
             colorize_depth(pred.numpy(), lo, hi), err_rgb]
    return np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in tiles], 1)


def format_metrics(result: dict[str, Any]) -> str:
    head = "scene".ljust(34) + "".join(k.rjust(9) for k in METRIC_NAMES)
    lines = [f"protocol {result['protocol']}, alignment {result['align']}, precision {result.get('precision', 'fp32')}, "
             f"{result['images']} images", head]
    for name, m in list(result["per_scene"].items()) + [("overall", result["overall"])]:
        lines.append(name[:33].ljust(34) + "".join(f"{m[k]:9.4f}" for k in METRIC_NAMES))
    return "\n".join(lines)
