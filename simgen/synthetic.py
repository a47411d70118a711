"""A small dataset in the shard format without Blender: boxes ('things') in front of a slanted
wall. For tests, benchmarks and trying `distill` on a machine without the render extra."""

from __future__ import annotations


import numpy as np

from simgen import dataset, shards
from simgen.store import Location

DEPTH_SCALE = 1000.0  # millimetres, as simgen's indoor default
MAX_DEPTH_M = 10.0


def synthetic_sample(index: int, size: tuple[int, int], rng: np.random.Generator) -> shards.Sample:
    """One sample: a wall 3-5 m away slanting left to right, and 1-3 boxes 1-2.5 m away."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    depth = (3.0 + 2.0 * xx / w + rng.uniform(-0.5, 0.5)).astype(np.float32)
    rgb = np.stack([(xx * 4 + index * 9) % 255, (yy * 4) % 255, np.full_like(xx, 90 + index % 50)], -1).astype(np.uint8)
    inst = np.ones((h, w), np.uint16)
    instances = [{"id": 1, "category": "wall", "asset": None, "thing": False}]
    for j in range(int(rng.integers(1, 4))):
        y0, x0 = int(rng.integers(0, h - 12)), int(rng.integers(0, w - 12))
        bh, bw = int(rng.integers(6, 14)), int(rng.integers(6, 18))
        depth[y0:y0 + bh, x0:x0 + bw] = float(rng.uniform(1.0, 2.5))
        rgb[y0:y0 + bh, x0:x0 + bw] = rng.integers(0, 255, 3)
        inst[y0:y0 + bh, x0:x0 + bw] = j + 2
        instances.append({"id": j + 2, "category": "box", "asset": "box", "thing": True})
    return shards.Sample(index, rgb, depth, inst, {"index": index, "instances": instances, "scene_family": "indoor"})


def write_synthetic_dataset(root: Location, n: int = 24, size: tuple[int, int] = (48, 64), samples_per_shard: int = 8,
                            seed: int = 0) -> Location:
    """Write an n-sample synthetic dataset of HxW `size` images to `root` (a new directory or an empty URL prefix)."""
    rng = np.random.default_rng(seed)
    config = {"synthetic": True, "height": size[0], "width": size[1]}
    with dataset.DatasetWriter(root, depth_scale=DEPTH_SCALE, max_depth_m=MAX_DEPTH_M, samples_per_shard=samples_per_shard,
                              config=config, seed=seed, generator="simgen.synthetic") as writer:
        for i in range(n):
            writer.add(synthetic_sample(i, size, rng))
    return writer.root
