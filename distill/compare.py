"""Comparing models: metrics without and with alignment, size and CPU latency, markdown tables.

Used by `scripts/demo.py` and `scripts/experiment_indoor.py` (one implementation of the tables
the docs show).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill.checkpoint import load_model
from distill.evaluate import EvalConfig, evaluate_alignments, grid_row, predict, stack_rows
from distill.networks import count_macs, count_params
from simgen.options import Size

# Latency: median of LATENCY_REPEATS single-image forward passes after LATENCY_WARMUP untimed ones.
LATENCY_REPEATS = 20
LATENCY_WARMUP = 3


def cpu_latency_ms(model: torch.nn.Module, input_size: Size, repeats: int = LATENCY_REPEATS) -> float:
    model = model.eval().cpu()
    x = torch.rand(1, 3, *input_size.hw)
    times = []
    with torch.no_grad():
        for _ in range(repeats + LATENCY_WARMUP):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return float(np.median(times[LATENCY_WARMUP:]) * 1000)


def measure_model(path: str | Path, data: str | Path, input_size: Size, protocol: str, split: str | None,
                  alignments: tuple[str, ...] = ("none", "median"), grid_path: Path | None = None,
                  latency: bool = True) -> dict[str, Any]:
    """Metrics of a model file under each alignment (overall and per scene), its parameters and
    MACs, and its CPU latency. The grid picture is drawn for the first alignment."""
    device = torch.device("cpu")
    model, _ = load_model(path, device)
    results = evaluate_alignments(model, data, input_size, device, tuple(alignments), protocol=protocol, split=split,
                                  grid_path=grid_path)
    evals = {align: {"overall": r["overall"], "per_scene": r["per_scene"]} for align, r in results.items()}
    row = {"eval": evals, "params": count_params(model), "macs": count_macs(model, input_size.hw)}
    if latency:
        row["cpu_ms"] = cpu_latency_ms(model, input_size)
    return row


@torch.no_grad()
def comparison_grid(models: dict[str, str | Path], data: str | Path, input_size: Size, path: str | Path,
                    count: int = 6) -> None:
    """One picture of the same frames for several models: RGB | ground truth | each model's depth |
    the last model's relative error, one row per frame, the models' names on top."""
    from PIL import Image, ImageDraw

    from distill.data import RGBDFolder
    from distill.layers import eval_mask

    loaded = [load_model(p)[0] for p in models.values()]
    ds = RGBDFolder(data, depth_scale=EvalConfig.depth_scale)
    rows = []
    for i in np.linspace(0, len(ds) - 1, min(count, len(ds))).round().astype(int):
        item = ds[int(i)]
        gt = item["depth"][0]
        preds = [predict(m, item["rgb"][None], input_size)[0, 0] for m in loaded]
        rows.append(grid_row(item["rgb"], gt, preds, eval_mask(gt, "none")))
    sheet = stack_rows(rows)
    head = 14
    canvas = Image.new("RGB", (sheet.width, sheet.height + head), "white")
    canvas.paste(sheet, (0, head))
    draw, tile = ImageDraw.Draw(canvas), sheet.width // (len(loaded) + 3)
    names = ["RGB", "ground truth", *models, f"error of {list(models)[-1]}"]
    for k, name in enumerate(names):
        draw.text((k * tile + 3, 1), name[: tile // 6], fill="black")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def metrics_table(rows: dict[str, dict[str, Any]], columns: tuple[tuple[str, str, str], ...] = (
        ("none", "abs_rel", "AbsRel"), ("none", "rmse", "RMSE"), ("none", "a1", "delta1"),
        ("median", "abs_rel", "AbsRel (median)"), ("median", "rmse", "RMSE (median)"),
        ("median", "a1", "delta1 (median)"))) -> list[str]:
    """Markdown lines: one row per model, the chosen (alignment, metric) columns, then parameters,
    GMACs and CPU ms where measured."""
    latency = all("cpu_ms" in v for v in rows.values())
    head = ["model"] + [title for _, _, title in columns] + ["params (M)", "GMACs"] + (["CPU ms"] if latency else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, v in rows.items():
        cells = [name] + [f"{v['eval'][align]['overall'][metric]:.3f}" for align, metric, _ in columns]
        cells += [f"{v['params'] / 1e6:.2f}", f"{v['macs'] / 1e9:.3f}"] + ([f"{v['cpu_ms']:.1f}"] if latency else [])
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def per_scene_table(rows: dict[str, dict[str, Any]], metric: str = "abs_rel", align: str = "none") -> list[str]:
    """Markdown lines: one row per model, one column per scene."""
    scenes = sorted(next(iter(rows.values()))["eval"][align]["per_scene"])
    lines = ["| model | " + " | ".join(scenes) + " |", "|---|" + "---|" * len(scenes)]
    for name, v in rows.items():
        ps = v["eval"][align]["per_scene"]
        lines.append(f"| {name} | " + " | ".join(f"{ps[s][metric]:.3f}" for s in scenes) + " |")
    return lines
