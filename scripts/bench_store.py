#!/usr/bin/env python
"""Datasets in an object store against the local disk, in the same run: one dataset read from a folder and from
a local S3 server (moto on 127.0.0.1) into the training loader, the demo's training run streamed from each
(images/s and its share of time waiting for data), and a small render into each.

    python scripts/bench_store.py                          # a synthetic 320x240 dataset of 512 samples
    python scripts/bench_store.py --dataset out/demo/sims  # a rendered one (e.g. the demo's)

Targets (issue 46): reading from the store at >= 90% of the local rate; <= 2% of training time waiting for data.
moto keeps objects in memory and answers on loopback: this measures the client side (s3fs, read-ahead, the
loader), not a network; docs/scale-out.md says what a real store adds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader

from distill.data import ShardStream
import demo  # scripts/demo.py, beside this file
from distill.standin import RESOLUTION, STANDIN_CKPT
from distill.train import TrainConfig, train
from simgen import store
from simgen.dataset import DatasetReader
from simgen.local_s3 import S3Server
from simgen.options import parse_size
from simgen.synthetic import write_synthetic_dataset

# scripts/demo.py's training run (its `distil`): options and student
DEMO = {"batch_size": 8, "workers": 1, "lr": 2e-3, "warmup": 20, "student": demo.STUDENT, "init_student": demo.INIT,
        "w_feature": demo.W_FEATURE}


def loader_rate(root: str, hw: tuple[int, int], epochs: int) -> float:
    """Images/s into the demo's training loader (its batch size and workers, augmentation on) over `epochs`
    epochs, from the first batch on: a run's loader starts once (training's clock leaves out its first step too)."""
    loader = DataLoader(ShardStream([root], hw, epochs=epochs, buffer=64), batch_size=DEMO["batch_size"],
                        num_workers=DEMO["workers"])
    batches = iter(loader)
    next(batches)
    t0, n = time.perf_counter(), 0
    for b in batches:
        n += b["rgb"].shape[0]
    return n / (time.perf_counter() - t0)


def train_rate(root: str, out: Path, steps: int) -> tuple[float, float]:
    """The demo's training run on `root` for `steps` steps: (images/s, share of step time waiting for data)."""
    cfg = TrainConfig(shards=[root], out=str(out), teacher={"source": str(STANDIN_CKPT)}, steps=steps,
                      log_every=steps, ckpt_every=steps, device="cpu", **DEMO)
    summary = train(cfg, show_progress=False)
    return summary["images_per_s"], summary["data_wait_share"]


def render_rate(out: str, n: int) -> float:
    """Images/s of `simgen render` (the fast profile at 160x120, one worker) into `out`."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "simgen.cli", "render", "--n", str(n), "--out", out, "--resolution",
                    "160x120", "--samples-per-shard", "4", "--quiet"], check=True, capture_output=True)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", help="a local simgen dataset to read (default: a synthetic one)")
    ap.add_argument("--n", type=int, default=512, help="samples of the synthetic dataset")
    ap.add_argument("--size", type=parse_size, default=parse_size("128x96"), help="loader crop WIDTHxHEIGHT (the "
                    "stand-in teacher's input size, which the demo trains at)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per loader pass")
    ap.add_argument("--repeats", type=int, default=2, help="alternating loader passes of each (best kept)")
    ap.add_argument("--train-steps", type=int, default=60, help="steps of the demo's training on each (0: skip)")
    ap.add_argument("--render", type=int, default=8, help="samples rendered into each (0: skip)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        server = S3Server(Path(tmp) / "moto.log")
        try:
            os.environ.update(server.env())
            run(args, Path(tmp), f"s3://{server.bucket()}", server)
        finally:
            server.stop()


def run(args: argparse.Namespace, tmp: Path, bucket: str, server: S3Server) -> None:
    size = parse_size(RESOLUTION).hw  # the demo renders at this size
    local = str(args.dataset or write_synthetic_dataset(tmp / "ds", n=args.n, size=size, samples_per_shard=32))
    remote = f"{bucket}/ds"
    fs, path = store.filesystem(remote)
    fs.put(local.rstrip("/") + "/", path, recursive=True)  # as `aws s3 sync DIR s3://...` would
    ds = DatasetReader(remote)
    print(f"{len(ds)} samples in {len(ds.shards)} shards ({sum(r['bytes'] for r in ds.shards) / 1e6:.0f} MB), "
          f"local folder vs s3:// on 127.0.0.1; {os.cpu_count()} cores")
    best, served = {"local": 0.0, "s3": 0.0}, 0.0
    for _ in range(args.repeats):
        for name, root in (("local", local), ("s3", remote)):
            cpu = server.cpu_seconds()
            t0 = time.perf_counter()
            best[name] = max(best[name], loader_rate(root, args.size.hw, args.epochs))
            if name == "s3":
                served = max(served, (server.cpu_seconds() - cpu) / (time.perf_counter() - t0))
    print(f"  training loader (batch {DEMO['batch_size']}, {DEMO['workers']} worker, {args.epochs} epochs, best of "
          f"{args.repeats}): local {best['local']:.1f} img/s, s3 {best['s3']:.1f} img/s: "
          f"s3 / local {best['s3'] / best['local']:.3f}x (target >= 0.90); the S3 server kept {served:.2f} of the "
          f"{os.cpu_count()} cores busy meanwhile")
    if args.train_steps:
        for name, root in (("local", local), ("s3", remote)):
            rate, wait = train_rate(root, tmp / f"run-{name}", args.train_steps)
            print(f"  demo training, {args.train_steps} steps from {name}: {rate:.1f} img/s, waiting for data "
                  f"{100 * wait:.2f}% of step time (target <= 2%)")
    if args.render:
        rates = {name: render_rate(out, args.render) for name, out in (("local", str(tmp / "render")),
                                                                      ("s3", f"{bucket}/render"))}
        print(f"  render {args.render} samples at 160x120: local {rates['local']:.2f} img/s, s3 {rates['s3']:.2f} "
              f"img/s: s3 / local {rates['s3'] / rates['local']:.3f}x")


if __name__ == "__main__":
    main()
