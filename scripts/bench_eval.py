#!/usr/bin/env python
"""Evaluation speed: frames/s of `evaluate_alignments` (both alignments, as the experiment and
`distill compare` run it) with frames batched (EVAL_BATCH, the default) against one at a time,
in the same run, and the largest difference of any frame's AbsRel between the two.

    python scripts/bench_eval.py --data ../shared/data/indoor-scenes [--split test] [--model M.ckpt]
                                 [--input-size 128x96] [--repeats 2]

Without --model: an untrained MobileNetV2 student (the speed does not depend on the weights).
The data is read in place. Run it alone: another heavy job on 2 cores distorts both figures.
"""

from __future__ import annotations

import distill  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)

import argparse
import time

import torch

from distill.checkpoint import load_model
from distill.evaluate import EVAL_BATCH, evaluate_alignments
from distill.networks import build_depth_model
from simgen.options import parse_size


def timed(model, args, batch_size: int) -> tuple[float, dict]:
    t0 = time.perf_counter()
    result = evaluate_alignments(model, args.data, args.input_size, torch.device("cpu"), ("none", "median"),
                                 protocol="nyu", split=args.split, batch_size=batch_size)
    return time.perf_counter() - t0, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="an RGB-D folder (index.csv) or rgb/+depth/ folder")
    ap.add_argument("--split", default="test")
    ap.add_argument("--model", help="a checkpoint or export (default: an untrained MobileNetV2)")
    ap.add_argument("--input-size", type=parse_size, default=parse_size("128x96"))
    ap.add_argument("--repeats", type=int, default=2, help="alternating timed passes of each (best kept)")
    args = ap.parse_args()
    if args.model:
        model, size = load_model(args.model)
        args.input_size = size or args.input_size
    else:
        torch.manual_seed(0)
        model = build_depth_model("mobilenetv2", 0.1, 10.0)
    best = {1: float("inf"), EVAL_BATCH: float("inf")}
    results = {}
    for _ in range(args.repeats):
        for batch in best:
            seconds, results[batch] = timed(model, args, batch)
            best[batch] = min(best[batch], seconds)
    frames = results[1]["none"]["images"]
    diff = max(abs(a["abs_rel"] - b["abs_rel"]) for a, b in
               zip(results[1]["none"]["per_image"], results[EVAL_BATCH]["none"]["per_image"], strict=True))
    print(f"{frames} frames of {args.data} (split {args.split}) at {args.input_size}, {torch.get_num_threads()} "
          f"threads, precision {results[1]['none']['precision']}, best of {args.repeats}")
    print(f"  one at a time:          {frames / best[1]:6.1f} frames/s ({1000 * best[1] / frames:.1f} ms/frame)")
    print(f"  batches of {EVAL_BATCH} (default): {frames / best[EVAL_BATCH]:6.1f} frames/s "
          f"({1000 * best[EVAL_BATCH] / frames:.1f} ms/frame)")
    print(f"  batched / one at a time: {best[1] / best[EVAL_BATCH]:.2f}x faster; largest per-frame AbsRel difference "
          f"{diff:.2e}")


if __name__ == "__main__":
    main()
