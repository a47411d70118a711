#!/usr/bin/env python
"""Does a shard's RGB depend on what the render process rendered before?

Renders shard K of a config twice, each in its own process: once fresh, once after shards
0..K-1 in the same process, and compares the two shards' RGB and depth. A worker may render many
shards (simgen.engines.RECYCLE_AFTER_SHARDS) only if they are identical (docs/rendering.md).

    python scripts/check_history.py [--shard 3] [--profile fast] [--scene mixed] [--resolution 160x120]
        [--shard-size 4] [--persistent-data on]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def render(out: str, shards: list[int], args: argparse.Namespace) -> None:
    """In this process: render the given shards in order; save the last one's RGB and depth."""
    from simgen.assets import BUILTIN_DIR
    from simgen.bootstrap import import_blenderproc
    from simgen.config import RenderConfig, parse_resolution
    from simgen.shards import iter_shard
    from simgen.worker import ShardTask, render_shard

    cfg = RenderConfig(scene=args.scene, profile=args.profile, resolution=parse_resolution(args.resolution),
                       samples_per_shard=args.shard_size)
    os.makedirs(Path(out) / "shards", exist_ok=True)
    record = None
    for i in shards:
        task = ShardTask(out=out, config=cfg.to_dict(), library_folders=[str(BUILTIN_DIR)], seed=0, shard_index=i,
                         start=i * args.shard_size, stop=(i + 1) * args.shard_size)
        import_blenderproc().bpy.context.scene.render.use_persistent_data = args.persistent_data == "on"
        record = render_shard(task)
    samples = list(iter_shard(record["staged"], cfg.resolved_depth_scale()))
    np.savez(Path(out) / "last.npz", rgb=np.stack([s.rgb for s in samples]), depth=np.stack([s.depth for s in samples]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shard", type=int, default=3, help="the shard compared (rendered after 0..K-1)")
    ap.add_argument("--profile", default="fast")
    ap.add_argument("--scene", default="mixed")
    ap.add_argument("--resolution", default="160x120")
    ap.add_argument("--shard-size", type=int, default=4)
    ap.add_argument("--persistent-data", choices=("on", "off"), default="off",
                    help="Blender's persistent render data (on in the first round, when RGB was seen to differ)")
    ap.add_argument("--_render", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._render:
        render(args._render[0], [int(i) for i in args._render[1:]], args)
        sys.stdout.flush()
        os._exit(0)  # a BlenderProc-initialised process can crash at exit; the results are saved
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k != "_render"]
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"fresh": [args.shard], "after": list(range(args.shard + 1))}
        for name, shards in runs.items():
            out = str(Path(tmp) / name)
            subprocess.run([sys.executable, __file__, *flags, "--_render", out, *map(str, shards)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        a, b = (np.load(Path(tmp) / name / "last.npz") for name in runs)
        rgb = np.abs(a["rgb"].astype(float) - b["rgb"].astype(float)).mean()
        depth = np.abs(a["depth"] - b["depth"]).max()
    print(f"shard {args.shard} ({args.profile}, {args.scene}, {args.resolution}, persistent data {args.persistent_data}): "
          f"RGB mean abs difference {rgb:.4f} grey levels, depth max difference {depth:.6f} m "
          f"(fresh process against one that rendered shards 0-{args.shard - 1} first)")


if __name__ == "__main__":
    main()
