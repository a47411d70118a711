#!/usr/bin/env python
"""Training speed of `distill train`: today's defaults against the fp32 reference path, in one run.

For each input size and each method (full: mixing + T + BN-statistics loss; kd: plain KD), it runs
real training steps on a synthetic shard dataset (simgen.synthetic, no Blender needed) with a
ResNet-18 teacher and a MobileNetV2 student, twice:
  reference  --precision fp32 --channels-last off
  default    --precision auto --channels-last on
and prints images/s, their ratio, the share of step time spent waiting for data, and the achieved
GFLOP/s against a matrix product of the same precision measured in the same run. It also measures
the data pipeline alone (a step of zero cost): the rate it can feed per worker, which says how
many workers a faster machine needs. `--busy N` runs the default path again beside N busy
processes (pure spin loops), to show how throughput degrades when the machine is shared.
`--hints W` adds the demo's student (a ResNet-10 started from the teacher, `--init-student teacher`)
at the default path, without and with feature hints (`--w-feature W`): what the hints cost.

    python scripts/bench_train.py [--sizes 128x96,256x192] [--steps 12] [--batch-size 8] [--busy 1] [--hints 10]
"""

from __future__ import annotations

import distill  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)

import argparse
import contextlib
import io
import multiprocessing as mp
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from distill.checkpoint import save_checkpoint
from distill.networks import build_depth_model, count_macs
from distill.networks.transform import TransformNet
from distill.runtime import pick_device, resolve_precision
from distill.train import TrainConfig, make_loader, train
from simgen.options import Size, parse_size
from simgen.synthetic import write_synthetic_dataset

REFERENCE = dict(precision="fp32", channels_last=False)
METHODS = {"full": dict(mixing=True, transform="on"), "kd": dict(mixing=False, transform="off")}


def matmul_gflops(device: torch.device, precision: str, n: int = 2048, repeats: int = 10) -> float:
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n ** 3 * repeats / (time.perf_counter() - t0) / 1e9


def step_flops(size: Size, batch: int, method: str) -> float:
    """FLOPs of one step (2 per multiply-accumulate; a backward with weight gradients counted as
    twice its forward, the teacher's backward to its input as once). Full method: T forward and
    backward, teacher forward and backward to the input, student forward and backward. Plain KD:
    teacher forward, student."""
    student = count_macs(build_depth_model("mobilenetv2"), size.hw)
    teacher = count_macs(build_depth_model("resnet18"), size.hw)
    if method == "kd":
        return 2.0 * (teacher + 3 * student) * batch
    tnet = count_macs(TransformNet(), size.hw)
    macs = 3 * tnet + 2 * teacher + 3 * student
    return 2.0 * macs * batch


def _spin() -> None:
    while True:
        pass


def loader_rate(cfg: TrainConfig, size: Size, batches: int = 24) -> float:
    """Images/s the data pipeline delivers on its own (the step costs nothing)."""
    it = iter(make_loader(cfg, size.hw))
    next(it)  # workers started, buffers filling
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * cfg.batch_size / (time.perf_counter() - t0)


def timed_run(cfg: TrainConfig, steps: int) -> tuple[float, float]:
    """(images/s, data-wait share) of `steps` steps in steady state: `train` leaves out its first
    step (worker start, shuffle-buffer fill, first-call kernel set-up)."""
    with contextlib.redirect_stdout(io.StringIO()):  # the run's start line, once per run
        summary = train(replace(cfg, steps=steps + 1), show_progress=False)
    return summary["images_per_s"], summary["data_wait_share"]


def hint_cost(base: TrainConfig, method: str, weight: float, steps: int, out: Path) -> None:
    """Images/s of the demo's student (ResNet-10 from the teacher) without and with feature hints."""
    student = dict(student="resnet10", init_student="teacher", **METHODS[method])
    rates = {w: timed_run(replace(base, out=f"{out}-{w}", w_feature=w, **student), steps)[0] for w in (0.0, weight)}
    print(f"  {method:4s} resnet10 from the teacher: {rates[0.0]:6.2f} images/s without hints, {rates[weight]:6.2f} "
          f"with --w-feature {weight:g}: hints cost {rates[0.0] / rates[weight]:.2f}x", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="128x96,256x192", help="input sizes, WIDTHxHEIGHT")
    ap.add_argument("--methods", default="full,kd")
    ap.add_argument("--steps", type=int, default=12, help="timed steps per run (after one untimed step)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--busy", type=int, default=0, help="also run the default path beside N busy processes")
    ap.add_argument("--hints", type=float, default=0.0, help="also time a ResNet-10 student from the teacher without "
                    "and with --w-feature W (0: skip)")
    args = ap.parse_args()
    device = pick_device(args.device)
    auto = resolve_precision("auto", device)
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    ref = {p: matmul_gflops(device, p) for p in sorted({"fp32", auto})}
    print(f"device {device}; torch {torch.__version__}; {torch.get_num_threads()} threads; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}; auto precision = {auto}")
    print("matmul 2048^3 reference: " + ", ".join(f"{p} {g:.1f} GFLOP/s" for p, g in ref.items()))
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        tmp = Path(tmp)
        shards = write_synthetic_dataset(tmp / "shards", n=256, size=(240, 320), samples_per_shard=32)
        for size in sizes:
            teacher = tmp / f"teacher-{size}.ckpt"
            save_checkpoint(teacher, build_depth_model("resnet18"), "resnet18", size, 0.1, 10.0)
            base = TrainConfig(shards=[str(shards)], out="", teacher={"source": str(teacher)},
                               batch_size=args.batch_size, workers=args.workers, device=str(device),
                               log_every=1000, ckpt_every=10 ** 6, warmup=1)
            feed = loader_rate(base, size)
            print(f"\n{size}, batch {args.batch_size}: data pipeline alone {feed:.1f} images/s with "
                  f"{args.workers} workers ({feed / max(1, args.workers):.1f} per worker)")
            for method in args.methods.split(","):
                results = {}
                variants = [("reference", REFERENCE), ("default", {})]
                for name, overrides in variants:
                    cfg = replace(base, out=str(tmp / f"{method}-{name}-{size}"), **METHODS[method], **overrides)
                    ips, wait = timed_run(cfg, args.steps)
                    prec = cfg.precision if cfg.precision != "auto" else auto
                    gflops = step_flops(size, args.batch_size, method) * ips / args.batch_size / 1e9
                    results[name] = ips
                    print(f"  {method:4s} {name:9s} ({prec}, {'channels_last' if cfg.channels_last else 'contiguous'}"
                          f"): {ips:6.2f} images/s, "
                          f"data wait {100 * wait:4.1f}%, {gflops:6.1f} GFLOP/s = {gflops / ref[prec]:.2f}x the {prec} matmul",
                          flush=True)
                print(f"  {method:4s} default / reference: {results['default'] / results['reference']:.2f}x")
                if args.busy:
                    procs = [mp.Process(target=_spin, daemon=True) for _ in range(args.busy)]
                    for p in procs:
                        p.start()
                    try:
                        ips, wait = timed_run(replace(base, out=str(tmp / f"{method}-busy-{size}"), **METHODS[method]),
                                              args.steps)
                    finally:
                        for p in procs:
                            p.terminate()
                    print(f"  {method:4s} default beside {args.busy} busy process(es): {ips:.2f} images/s "
                          f"({results['default'] / ips:.2f}x slower), data wait {100 * wait:.1f}%", flush=True)
                if args.hints:
                    hint_cost(base, method, args.hints, args.steps, tmp / f"{method}-hints-{size}")


if __name__ == "__main__":
    main()
