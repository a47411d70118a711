#!/usr/bin/env python
"""Latency of every student architecture and the teacher, in one run: parameters, MACs, and the median
of batch-1 forward passes in PyTorch eager (fp32; bf16 where the CPU runs it natively) and onnxruntime
(fp32; int8 static quantization), at each size, with a fixed number of threads; each row's speed-up
over the teacher in the same run.

    python scripts/bench_latency.py [--sizes 320x240,128x96] [--threads 2] [--repeats 20]
                                    [--teacher assets/teacher/standin-resnet18.ckpt] [--json out.json]

The students are built untrained (latency does not depend on the weights); int8 is calibrated on 16
built-in synthetic rooms. Run it alone: another heavy job on 2 cores distorts every figure.
"""

from __future__ import annotations

import distill  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)

import argparse
import json
from pathlib import Path

from distill.checkpoint import load_model
from distill.latency import LATENCY_REPEATS, latency_row
from distill.networks import ARCHITECTURES, build_depth_model
from distill.runtime import cpu_flags
from distill.teacher_check import sample_images
from simgen.options import parse_size

ROOT = Path(__file__).resolve().parents[1]
TIMINGS = ("eager_fp32", "eager_bf16", "onnx_fp32", "onnx_int8")
CALIBRATION_IMAGES = 16


def table(rows: dict[str, dict], size: str) -> list[str]:
    """Markdown: one row per model at one size; speed-ups over the teacher's same column in brackets."""
    teacher = rows["teacher"]
    cols = [c for c in TIMINGS if c in teacher]
    lines = [f"### {size}", "", "| model | params (M) | GMACs | " + " | ".join(f"{c} ms (x teacher)" for c in cols) + " |",
             "|---" * (3 + len(cols)) + "|"]
    for name, r in rows.items():
        cells = [f"{r[c]:.1f} ({teacher[c] / r[c]:.2f}x)" for c in cols]
        lines.append(f"| {name} | {r['params'] / 1e6:.2f} | {r['macs'] / 1e9:.3f} | " + " | ".join(cells) + " |")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="320x240,128x96", help="comma-separated WIDTHxHEIGHT")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=LATENCY_REPEATS, help="timed runs (median), after warm-up")
    ap.add_argument("--teacher", default=str(ROOT / "assets/teacher/standin-resnet18.ckpt"))
    ap.add_argument("--students", default=",".join(ARCHITECTURES), help="comma-separated architectures")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    bf16 = sorted(cpu_flags() & {"avx512_bf16", "amx_bf16"})
    print(f"threads {args.threads}, median of {args.repeats} after warm-up; native bf16: {', '.join(bf16) or 'no'}")
    results = {}
    for text in args.sizes.split(","):
        size = parse_size(text)
        calibration = sample_images(size.hw, None, CALIBRATION_IMAGES)
        models = {"teacher": load_model(args.teacher)[0]}
        models.update({arch: build_depth_model(arch) for arch in args.students.split(",")})
        rows = {name: latency_row(m, size, args.threads, calibration, args.repeats) for name, m in models.items()}
        results[str(size)] = rows
        print("\n".join(table(rows, str(size))), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
