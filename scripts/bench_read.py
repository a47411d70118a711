#!/usr/bin/env python
"""Cost of checking each shard's sha256 as it is read: samples/s of `DatasetReader.iter_samples`
with the check (the default) against without it, in the same run, on a synthetic dataset.

    python scripts/bench_read.py [--n 512] [--size 320x240] [--repeats 3]
    python scripts/bench_read.py --dataset out/demo/sims      (a rendered dataset instead)

Reading here is decoding only (three PNGs and a JSON per sample); a training step adds resizing,
augmentation and the networks, so the check's share of a training step is far smaller.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from simgen.options import parse_size
from simgen.dataset import DatasetReader
from simgen.synthetic import write_synthetic_dataset


def rate(ds: DatasetReader, verify: bool) -> float:
    t0 = time.perf_counter()
    count = sum(1 for _ in ds.iter_samples(verify=verify))
    return count / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=512, help="samples")
    ap.add_argument("--size", type=parse_size, default=parse_size("320x240"), help="image WIDTHxHEIGHT")
    ap.add_argument("--repeats", type=int, default=3, help="alternating timed passes of each (best kept)")
    ap.add_argument("--dataset", help="measure this dataset (e.g. a `simgen render` output) instead of a synthetic one")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-read-") as tmp:
        root = args.dataset or write_synthetic_dataset(Path(tmp) / "ds", n=args.n, size=args.size.hw,
                                                       samples_per_shard=64)
        ds = DatasetReader(root)
        mb = sum(r["bytes"] for r in ds.shards) / 1e6
        rate(ds, False)  # warm the page cache
        best = {True: 0.0, False: 0.0}
        for _ in range(args.repeats):
            for verify in (False, True):
                best[verify] = max(best[verify], rate(ds, verify))
    print(f"{len(ds)} samples of {args.dataset or args.size} in {len(ds.shards)} shards ({mb:.0f} MB), "
          f"best of {args.repeats}")
    print(f"  without the sha256 check: {best[False]:7.1f} samples/s")
    print(f"  with it (default):        {best[True]:7.1f} samples/s")
    print(f"  checked / unchecked: {best[True] / best[False]:.3f}x")


if __name__ == "__main__":
    main()
