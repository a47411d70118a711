"""Latency of a depth model on the CPU: PyTorch eager (fp32, and bf16 where the CPU runs it natively) and
onnxruntime (fp32, and int8 quantized), batch 1, a fixed number of threads. scripts/bench_latency.py
prints the table; `distill/compare.py` times models the same way."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from distill.networks import count_macs, count_params
from distill.runtime import autocast, native_bf16
from simgen.options import Size

# Latency: median of LATENCY_REPEATS single-image forward passes after LATENCY_WARMUP untimed ones.
LATENCY_REPEATS = 20
LATENCY_WARMUP = 3
# seconds of quiet before onnxruntime is timed: the OpenMP threads of the export's PyTorch passes stop spinning
SETTLE_S = 1.0


def median_ms(run: Callable[[], Any], repeats: int = LATENCY_REPEATS, warmup: int = LATENCY_WARMUP) -> float:
    """Median wall time of `run()` in milliseconds, after `warmup` untimed calls."""
    times = []
    for i in range(repeats + warmup):
        t0 = time.perf_counter()
        run()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def eager_ms(model: torch.nn.Module, size: Size, precision: str = "fp32", repeats: int = LATENCY_REPEATS) -> float:
    """PyTorch eager at batch 1 on the CPU (under bf16 autocast with precision 'bf16')."""
    model = model.eval().cpu()
    x = torch.rand(1, 3, *size.hw)

    def run():
        with torch.no_grad(), autocast(torch.device("cpu"), precision):
            model(x)

    return median_ms(run, repeats)


def onnx_ms(path: Path, size: Size, threads: int, repeats: int = LATENCY_REPEATS) -> float:
    """onnxruntime at batch 1 with `threads` intra-op threads."""
    from distill.export import onnx_runner

    run, x = onnx_runner(path, threads), torch.rand(1, 3, *size.hw)
    return median_ms(lambda: run(x), repeats)


def latency_row(model: torch.nn.Module, size: Size, threads: int, calibration: torch.Tensor,
                repeats: int = LATENCY_REPEATS) -> dict[str, Any]:
    """Parameters, MACs and the latencies of one model at one size: eager fp32 (and bf16 where native),
    onnxruntime fp32 and int8 (quantized on `calibration`, N x 3 x H x W)."""
    from distill.export import export_model

    torch.set_num_threads(threads)
    row = {"params": count_params(model), "macs": count_macs(model, size.hw)}
    with tempfile.TemporaryDirectory() as tmp:  # onnxruntime first: torch's OpenMP threads, once used, spin a while
        paths = {}
        for name, images in (("onnx_fp32", None), ("onnx_int8", calibration)):
            paths[name] = Path(tmp) / f"{name}.onnx"
            export_model(model, size, paths[name], "onnx", calibration=images, check_sizes=())
        time.sleep(SETTLE_S)
        row.update({name: onnx_ms(path, size, threads, repeats) for name, path in paths.items()})
    row["eager_fp32"] = eager_ms(model, size, "fp32", repeats)
    if native_bf16(torch.device("cpu")):
        row["eager_bf16"] = eager_ms(model, size, "bf16", repeats)
    return row
