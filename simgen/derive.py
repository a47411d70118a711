"""Datasets made from other datasets, in the shard format: a subset, or every sample changed.

Each is written once by the shard writer and reused while its recorded config matches (the config
names the source and the change), so an experiment can ask for it again at no cost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from simgen import dataset, shards

Change = Callable[[shards.Sample, np.random.Generator], shards.Sample]


def derived_dataset(src: Path, out: Path, config: dict, change: Change, n: int | None = None, seed: int = 0,
                    generator: str = "simgen.derive") -> Path:
    """A dataset of the first `n` (all) samples of `src`, each passed through `change` (Sample, rng) -> Sample,
    with the source's depth encoding and shard size."""
    if dataset.holds_complete_dataset(out, config):
        return out
    rng = np.random.default_rng(seed)
    source = dataset.DatasetReader(src)
    with dataset.DatasetWriter(out, depth_scale=source.depth_scale, max_depth_m=source.manifest["depth"]["max_m"],
                              samples_per_shard=source.manifest["samples_per_shard"], config=config, seed=seed,
                              generator=generator) as writer:
        for k, s in enumerate(source.iter_samples()):
            if n is not None and k == n:
                break
            writer.add(change(s, rng))
    return out


def first_samples(src: Path, out: Path, n: int) -> Path:
    """The first `n` samples of `src`, unchanged."""
    return derived_dataset(src, out, {"derived_from": str(src), "first": n}, lambda s, rng: s, n=n)


def shuffle_patches(s: shards.Sample, rng: np.random.Generator, patch: int) -> shards.Sample:
    """The sample's image cut into patch x patch tiles, shuffled: its colour statistics without its scene
    (the image is cropped to whole tiles; no instances)."""
    h, w = (s.rgb.shape[0] // patch) * patch, (s.rgb.shape[1] // patch) * patch
    tiles = s.rgb[:h, :w].reshape(h // patch, patch, w // patch, patch, 3).swapaxes(1, 2).reshape(-1, patch, patch, 3)
    tiles = tiles[rng.permutation(len(tiles))]
    rgb = tiles.reshape(h // patch, w // patch, patch, patch, 3).swapaxes(1, 2).reshape(h, w, 3)
    return shards.Sample(s.index, np.ascontiguousarray(rgb), s.depth[:h, :w], np.zeros((h, w), np.uint16),
                         {"index": s.index, "instances": []})


def patch_shuffled(src: Path, out: Path, patch: int = 8, seed: int = 0) -> Path:
    """Images with no scene: every image's patch x patch tiles shuffled (colour statistics kept)."""
    return derived_dataset(src, out, {"derived_from": str(src), "patch": patch, "seed": seed},
                           lambda s, rng: shuffle_patches(s, rng, patch), seed=seed)
