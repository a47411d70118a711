"""A small dataset in the shard format without Blender: boxes ('things') in front of a slanted
wall. For tests, benchmarks and trying `distill` on a machine without the render extra."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simgen import shards


def write_synthetic_dataset(root: Path, n: int = 24, size=(48, 64), per_shard: int = 8, seed: int = 0) -> Path:
    """A small simgen-format dataset without Blender: boxes ('things') in front of a slanted wall."""
    rng = np.random.default_rng(seed)
    h, w = size
    (root / "shards").mkdir(parents=True, exist_ok=True)
    records = {}
    yy, xx = np.mgrid[0:h, 0:w]
    for k in range(0, n, per_shard):
        samples = []
        for i in range(k, min(n, k + per_shard)):
            depth = (3.0 + 2.0 * xx / w + rng.uniform(-0.5, 0.5)).astype(np.float32)
            rgb = np.stack([(xx * 4 + i * 9) % 255, (yy * 4) % 255, np.full_like(xx, 90 + i % 50)], -1).astype(np.uint8)
            inst = np.ones((h, w), np.uint16)
            instances = [{"id": 1, "category": "wall", "asset": None, "thing": False}]
            for j in range(int(rng.integers(1, 4))):
                y0, x0 = int(rng.integers(0, h - 12)), int(rng.integers(0, w - 12))
                bh, bw = int(rng.integers(6, 14)), int(rng.integers(6, 18))
                d = float(rng.uniform(1.0, 2.5))
                depth[y0:y0 + bh, x0:x0 + bw] = d
                rgb[y0:y0 + bh, x0:x0 + bw] = rng.integers(0, 255, 3)
                inst[y0:y0 + bh, x0:x0 + bw] = j + 2
                instances.append({"id": j + 2, "category": "box", "asset": "box", "thing": True})
            samples.append(shards.Sample(i, rgb, depth, inst, {"index": i, "instances": instances,
                                                                "scene_family": "indoor"}))
        rec = shards.write_shard(root / "shards" / shards.shard_name(k // per_shard), samples, 1000.0)
        records[rec["name"]] = rec
    shards.save_manifest(root, {"format": shards.FORMAT_NAME, "version": 1, "n": n, "samples_per_shard": per_shard,
                                "config": {}, "seed": seed, "depth": {"scale": 1000.0, "max_m": 10.0},
                                "shards": records})
    return root
