"""Evaluation: standard depth metrics per image, averaged overall and per scene; a picture grid."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from distill.data import RGBDFolder
from distill.layers import ALIGNMENTS, METRIC_NAMES, PROTOCOLS, align_prediction, compute_depth_errors, eval_mask
from distill.runtime import PRECISIONS, autocast, resolve_precision
from simgen.options import ConfigError, Size, as_size, check_fields, option, parse_size


@torch.no_grad()
def predict(model: torch.nn.Module, rgb: torch.Tensor, input_size: Size, precision: str = "fp32") -> torch.Tensor:
    """Resize the image to the model's input size (WxH), predict (under bf16 autocast with
    precision 'bf16'), resize depth back (B x 1 x H x W, fp32)."""
    h, w = rgb.shape[-2:]
    hw = as_size(input_size).hw
    x = F.interpolate(rgb, size=hw, mode="bilinear", align_corners=False) if (h, w) != hw else rgb
    with autocast(rgb.device, precision):
        pred = model(x).float()
    return F.interpolate(pred, size=(h, w), mode="bilinear", align_corners=False) if pred.shape[-2:] != (h, w) else pred


@dataclass
class EvalConfig:
    """Options of `distill eval` (flags generated from these fields) and defaults of evaluate_model."""

    model: str = option("", "checkpoint of this project, or TorchScript")
    data: str = option("", "RGB-D folder, index.csv folder or dataset")
    split: str = option("test", "index.csv split to use ('all' for every row)")
    depth_scale: float = option(1000.0, "depth PNG units per metre (1000 NYU, 256 KITTI)", positive=True)
    protocol: str = option("nyu", "crop and depth range of the metrics", choices=tuple(PROTOCOLS))
    align: str = option("auto", "align each prediction to the ground truth first (auto: a relative model's "
                        "by scale and shift, a metric one's not)", choices=("auto",) + ALIGNMENTS)
    input_size: Size | None = option(None, "model input WIDTHxHEIGHT", parse=parse_size,
                                       shown="the checkpoint's")
    out: str = option("eval", "folder for metrics.json and grid.png")
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    precision: str = option("auto", "auto | fp32 | bf16 (see distill train --help)", choices=PRECISIONS)

    def __post_init__(self) -> None:
        check_fields(self)


# alignment "auto", by what the model's depth means (checkpoint.ModelInfo.output)
AUTO_ALIGNMENT = {"metric": "none", "relative": "scale-shift-inverse", "relative-depth": "scale-shift"}


def resolve_alignment(align: str, output: str) -> str:
    """The alignment `auto` stands for: none for metric depth, scale and shift for a relative model's."""
    return AUTO_ALIGNMENT[output] if align == "auto" else align


def evaluate_model(model: torch.nn.Module, data: str | Path, input_size: Size, device: torch.device,
                   protocol: str = EvalConfig.protocol, align: str = EvalConfig.align,
                   depth_scale: float = EvalConfig.depth_scale, split: str | None = EvalConfig.split,
                   grid_path: str | Path | None = None, grid_count: int = 6,
                   precision: str = EvalConfig.precision, output: str = "metric") -> dict[str, Any]:
    """Metrics of `model` (input size WxH) on RGB-D data; split 'all' or None: every frame;
    `precision` auto | fp32 | bf16 (distill/runtime.py); `output` what its depth means (for align auto)."""
    align = resolve_alignment(align, output)
    result = evaluate_alignments(model, data, input_size, device, (align,), protocol, depth_scale, split, grid_path,
                                 grid_count, precision)[align]
    return {**result, "output": output}


# Frames predicted together: 2.37x faster than one at a time on 2 CPU cores (scripts/bench_eval.py; per-image
# metrics and results unchanged: the models are in eval mode). Frames of another size start a new batch.
EVAL_BATCH = 8


def _batches(ds: RGBDFolder, size: int):
    """Runs of consecutive frames of one RGB size, at most `size` long: lists of (index, item)."""
    batch: list[tuple[int, dict[str, Any]]] = []
    for i in range(len(ds)):
        item = ds[i]
        if batch and (len(batch) == size or item["rgb"].shape != batch[0][1]["rgb"].shape):
            yield batch
            batch = []
        batch.append((i, item))
    if batch:
        yield batch


@torch.no_grad()
def evaluate_alignments(model: torch.nn.Module, data: str | Path, input_size: Size, device: torch.device,
                        aligns: tuple[str, ...], protocol: str = EvalConfig.protocol,
                        depth_scale: float = EvalConfig.depth_scale, split: str | None = EvalConfig.split,
                        grid_path: str | Path | None = None, grid_count: int = 6,
                        precision: str = EvalConfig.precision, batch_size: int = EVAL_BATCH) -> dict[str, dict[str, Any]]:
    """evaluate_model's result for each alignment, from one prediction per frame (the model runs
    once however many alignments are asked for, on batches of `batch_size` frames)."""
    precision = resolve_precision(precision, device)
    ds = RGBDFolder(data, depth_scale=depth_scale, split=None if split == "all" else split)
    model.eval()
    per_image: dict[str, list[dict[str, Any]]] = {a: [] for a in aligns}
    rows = []
    wanted = set(np.linspace(0, len(ds) - 1, min(grid_count, len(ds))).round().astype(int).tolist())
    for batch in _batches(ds, batch_size):
        preds = predict(model, torch.stack([item["rgb"] for _, item in batch]).to(device), input_size, precision)
        for (i, item), pred in zip(batch, preds):
            gt = item["depth"][0].to(device)
            if pred.shape[-2:] != gt.shape:  # depth recorded at another size than the RGB: compare at the depth's
                pred = F.interpolate(pred[None], size=gt.shape, mode="bilinear", align_corners=False)[0]
            pred = pred[0]
            mask = eval_mask(gt, protocol)
            if mask.sum() < 10:
                continue
            for align in aligns:
                p = align_prediction(pred[mask], gt[mask], align).clamp(1e-3, None)
                per_image[align].append({"name": item["name"], "scene": item["scene"],
                                         **compute_depth_errors(gt[mask], p)})
            if grid_path and i in wanted:
                rows.append(grid_row(item["rgb"], gt.cpu(), [pred.cpu()], mask.cpu()))
    if not per_image[aligns[0]]:
        raise ConfigError(f"{data}: no image had valid ground truth under protocol {protocol!r} (with --depth-scale "
                          f"{depth_scale})")
    bad = [r["name"] for r in per_image[aligns[0]] if not all(np.isfinite(r[k]) for k in METRIC_NAMES)]
    if bad:
        raise ConfigError(f"the model predicts non-finite depth on {len(bad)} frame(s) (first: {bad[0]}): its weights "
                          "hold NaN or inf; no metrics written")
    if grid_path and rows:
        Path(grid_path).parent.mkdir(parents=True, exist_ok=True)
        stack_rows(rows).save(grid_path)
    return {align: _summary(images, protocol, align, precision) for align, images in per_image.items()}


def _summary(per_image: list[dict[str, Any]], protocol: str, align: str, precision: str) -> dict[str, Any]:
    """Per-image errors averaged overall and per scene."""
    overall = {k: float(np.mean([r[k] for r in per_image])) for k in METRIC_NAMES}
    scenes = sorted({r["scene"] for r in per_image if r["scene"]})
    per_scene = {s: {k: float(np.mean([r[k] for r in per_image if r["scene"] == s])) for k in METRIC_NAMES}
                 for s in scenes}
    return {"protocol": protocol, "align": align, "precision": precision, "images": len(per_image), "overall": overall,
            "per_scene": per_scene, "per_image": per_image}


def stack_rows(rows: list[np.ndarray]) -> Image.Image:
    """Grid rows stacked; rows of frames of other sizes (as in KITTI) are scaled to the first
    row's height and the sheet is padded white."""
    height = rows[0].shape[0]
    scaled = [Image.fromarray(r).resize((round(r.shape[1] * height / r.shape[0]), height)) if r.shape[0] != height
              else Image.fromarray(r) for r in rows]
    sheet = Image.new("RGB", (max(im.width for im in scaled), height * len(scaled)), "white")
    for k, im in enumerate(scaled):
        sheet.paste(im, (0, k * height))
    return sheet


def grid_row(rgb: torch.Tensor, gt: torch.Tensor, preds: list[torch.Tensor], mask: torch.Tensor) -> np.ndarray:
    """RGB | ground truth | each prediction | the last prediction's relative error (green 0, red 50%
    or more), depth coloured over the frame's ground-truth range."""
    from simgen.preview import colorize_depth

    valid = gt[gt > 0]
    lo, hi = (float(valid.min()), float(valid.max())) if valid.numel() else (None, None)
    pred = preds[-1]
    err = torch.zeros_like(gt)
    err[mask] = (torch.abs(pred[mask] - gt[mask]) / gt[mask]).clamp(0, 0.5) / 0.5
    err_rgb = (np.stack([err.numpy(), 1 - err.numpy(), np.zeros_like(err.numpy())], -1) * 255).astype(np.uint8)
    err_rgb[~mask.numpy()] = 0
    if rgb.shape[-2:] != gt.shape:
        rgb = F.interpolate(rgb[None], size=gt.shape, mode="bilinear", align_corners=False)[0].clamp(0, 1)
    tiles = [(rgb.permute(1, 2, 0).numpy() * 255).astype(np.uint8), colorize_depth(gt.numpy(), lo, hi),
             *[colorize_depth(p.numpy(), lo, hi) for p in preds], err_rgb]
    return np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in tiles], 1)


def format_metrics(result: dict[str, Any]) -> str:
    head = "scene".ljust(34) + "".join(k.rjust(9) for k in METRIC_NAMES)
    relative = result.get("output", "metric") != "metric"
    lines = [f"protocol {result['protocol']}, alignment {result['align']}"
             + (" (the model is relative: its depth is known up to scale and shift)" if relative else "")
             + f", precision {result.get('precision', 'fp32')}, {result['images']} images", head]
    for name, m in list(result["per_scene"].items()) + [("overall", result["overall"])]:
        lines.append(name[:33].ljust(34) + "".join(f"{m[k]:9.4f}" for k in METRIC_NAMES))
    return "\n".join(lines)
