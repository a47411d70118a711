#!/usr/bin/env python
"""Training speed of `distill train` with the default teacher (ResNet-34 depth net) and student
(MobileNetV2), the full method (mixing + transformation network + BN-statistics loss).

For each input size it runs real training steps on a synthetic shard dataset (simgen.synthetic,
no Blender needed) and prints: training images/s, the share of step time spent waiting for
data, the achieved GFLOP/s of the step's convolutions, and, as the reference measured in the
same run, the GFLOP/s of a plain float32 matrix product on the same device. Their ratio says
how much of the machine the training loop uses; the data-wait share says whether loading is the
bottleneck (it must not be).

    python scripts/bench_train.py [--sizes 228x304,96x128] [--steps 12] [--batch-size 8] [--device auto]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from distill.networks import build_depth_model, count_macs
from distill.networks.transform import TransformNet
from distill.train import TrainConfig, pick_device, train
from simgen.synthetic import write_synthetic_dataset


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
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


def step_flops(size: tuple[int, int], batch: int) -> float:
    """FLOPs of one training step of the full method (2 FLOPs per multiply-accumulate; backward
    counted as twice the forward): T forward+backward with the teacher forward and its backward to
    the input, T forward again, teacher forward (no grad), student forward+backward."""
    student = count_macs(build_depth_model("mobilenetv2"), size)
    teacher = count_macs(build_depth_model("resnet34"), size)
    tnet = count_macs(TransformNet(), size)
    macs = 3 * tnet + 3 * teacher + tnet + teacher + 3 * student
    return 2.0 * macs * batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="228x304,96x128")
    ap.add_argument("--steps", type=int, default=12, help="timed steps per size (after 3 warm-up steps)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = pick_device(args.device)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    ref = matmul_gflops(device)
    print(f"device {device}; reference float32 matmul 2048^3: {ref:.1f} GFLOP/s")
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        tmp = Path(tmp)
        shards = write_synthetic_dataset(tmp / "shards", n=256, size=(240, 320), per_shard=32)
        for size in sizes:
            teacher = tmp / f"teacher-{size[0]}x{size[1]}.ckpt"
            torch.save({"model_arch": "resnet34", "model": build_depth_model("resnet34").state_dict(),
                        "input_size": list(size), "model_range": {"min_depth": 0.1, "max_depth": 10.0}}, teacher)
            cfg = TrainConfig(shards=[str(shards)], out=str(tmp / f"warm-{size[0]}"), teacher={"source": str(teacher)},
                              steps=3, batch_size=args.batch_size, workers=args.workers, device=str(device),
                              log_every=1000, ckpt_every=10 ** 6, warmup=1)
            train(cfg, show_progress=False)  # warm-up: allocator, kernels, worker start
            t0 = time.perf_counter()
            summary = train(replace(cfg, out=str(tmp / f"run-{size[0]}"), steps=args.steps), show_progress=False)
            seconds = time.perf_counter() - t0
            ips = args.steps * args.batch_size / seconds
            achieved = step_flops(size, args.batch_size) * args.steps / seconds / 1e9
            print(f"{size[0]}x{size[1]} batch {args.batch_size}: {ips:.2f} images/s, "
                  f"data wait {100 * summary['data_wait_share']:.1f}% of step time, "
                  f"{achieved:.1f} GFLOP/s achieved = {achieved / ref:.2f}x the matmul reference")


if __name__ == "__main__":
    main()
