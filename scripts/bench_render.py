#!/usr/bin/env python
"""Render speed: the default profile against BlenderProc's own render defaults, in one run.

Renders one fixed small workload (indoor scenes, 320x240, seed 0) end to end through
`simgen render` (scene build, view checks, Cycles, PNG encoding, shard write, manifest commit)
with the default profile, then the first samples of the same workload with the "blenderproc"
profile (BlenderProc's defaults: 1024 samples with adaptive threshold 0.01, OIDN denoiser, 3
bounces) as the reference. Prints images/s for each, their ratio and the peak memory of the
render processes. Both runs use the same machine, moment and worker count, so the ratio is
robust to the noise of a shared machine; absolute figures drift.

    python scripts/bench_render.py [--n 64] [--reference-n 2] [--workers 1] [--resolution 320x240] [--also noisy]

The reference is slow (about 3.5 minutes per image on 2 cores): the defaults take ~9 minutes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(out: Path, n: int, profile: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "simgen.cli", "render", "--n", str(n), "--out", str(out), "--profile", profile,
           "--resolution", args.resolution, "--scene", args.scene, "--workers", str(args.workers),
           "--shard-size", str(args.shard_size), "--quiet"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"profile": profile, "images": n, "seconds": round(seconds, 2), "images_per_s": round(n / seconds, 3),
            "peak_rss_mb_any_process": round(max(peak, before) / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=64, help="images with the default profile")
    ap.add_argument("--reference-n", type=int, default=2, help="images with BlenderProc's defaults (slow)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--scene", default="indoor")
    ap.add_argument("--resolution", default="320x240")
    ap.add_argument("--shard-size", type=int, default=64, help="samples per shard (the render default)")
    ap.add_argument("--also", default="", help="other profiles to run on the same --n images (e.g. noisy), "
                    "each compared with the default")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        fast = run_once(Path(tmp) / "fast", args.n, "fast", args)
        others = [run_once(Path(tmp) / p, args.n, p, args) for p in filter(None, args.also.split(","))]
        ref = run_once(Path(tmp) / "ref", args.reference_n, "blenderproc", args)
    ratio = fast["images_per_s"] / ref["images_per_s"]
    print(f"workload: {args.scene} {args.resolution}, workers={args.workers}, shard size {args.shard_size}, seed 0")
    for r in (fast, *others, ref):
        print(f"  {r['profile']:<12} {r['images']:>4} images in {r['seconds']:>7.1f} s  "
              f"{r['images_per_s']:.3f} images/s  (peak RSS {r['peak_rss_mb_any_process']:.0f} MB)")
    print(f"ratio fast / blenderproc-defaults: {ratio:.1f}x   (targets: fast >= 1 image/s, ratio >= 3x)")
    for r in others:
        print(f"ratio fast / {r['profile']}: {fast['images_per_s'] / r['images_per_s']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"fast": fast, "others": others, "reference": ref, "ratio": ratio},
                                              indent=1))


if __name__ == "__main__":
    main()
