"""Datasets: a streaming reader over simgen shards for training, and RGB-D folders for evaluation
and teacher fitting. Shards are read only through `simgen.shards` (the format's one owner)."""

from __future__ import annotations

import csv
import io
import math
import random
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from simgen import store
from simgen.dataset import DatasetReader
from simgen.shards import MANIFEST, Sample, ShardError, index_shard, read_sample


class DataError(OSError):
    """RGB-D frames that are missing or unreadable; the message names the file."""


# The shard order of epoch e is shuffled with seed * EPOCH_SEED_STRIDE + e: a prime stride larger
# than any epoch count, so (seed, epoch) pairs never share an order.
EPOCH_SEED_STRIDE = 1_000_003


def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def to_tensors(rgb: np.ndarray, depth: np.ndarray, inst: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    out = {"rgb": torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0,
           "depth": torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))[None]}
    out["inst"] = (torch.zeros_like(out["depth"], dtype=torch.int64) if inst is None
                   else torch.from_numpy(inst.astype(np.int64))[None])
    return out


def resize_crop(item: dict[str, torch.Tensor], hw: tuple[int, int], rng: random.Random | None) -> dict[str, torch.Tensor]:
    """Scale so the image covers `hw` (height, width: torch's order), then crop (random with rng,
    central without). Depth and instance ids are resized with nearest neighbour: no invented depth
    at object edges."""
    h, w = item["rgb"].shape[-2:]
    th, tw = hw
    scale = max(th / h, tw / w)
    nh, nw = max(th, math.ceil(h * scale)), max(tw, math.ceil(w * scale))
    out = {}
    for key, t in item.items():
        if (nh, nw) != (h, w):
            mode = "bilinear" if key == "rgb" else "nearest"
            t = F.interpolate(t[None].float(), size=(nh, nw), mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))[0]
            t = t.long() if key == "inst" else t
        out[key] = t
    y0 = rng.randint(0, nh - th) if rng else (nh - th) // 2
    x0 = rng.randint(0, nw - tw) if rng else (nw - tw) // 2
    return {k: t[..., y0:y0 + th, x0:x0 + tw] for k, t in out.items()}


def augment(item: dict[str, torch.Tensor], rng: random.Random) -> dict[str, torch.Tensor]:
    """Horizontal flip and photometric jitter (brightness, contrast, saturation, per-channel gain)."""
    if rng.random() < 0.5:
        item = {k: t.flip(-1) for k, t in item.items()}
    rgb = item["rgb"]
    rgb = rgb * rng.uniform(0.8, 1.2)
    mean = rgb.mean()
    rgb = (rgb - mean) * rng.uniform(0.8, 1.2) + mean
    grey = rgb.mean(0, keepdim=True)
    rgb = (rgb - grey) * rng.uniform(0.8, 1.2) + grey
    rgb = rgb * torch.tensor([rng.uniform(0.92, 1.08) for _ in range(3)]).view(3, 1, 1)
    return dict(item, rgb=rgb.clamp(0, 1))


def thing_ids(sample: Sample) -> np.ndarray:
    """Instance map with only movable objects ('things') kept; structure becomes 0."""
    keep = np.array([i["id"] for i in sample.meta.get("instances", []) if i.get("thing")], dtype=np.int64)
    return np.where(np.isin(sample.inst, keep), sample.inst, 0)


class ShardStream(IterableDataset):
    """Samples of one or more simgen datasets, for training.

    Shards are the unit of distribution: each epoch the shard list is shuffled with (seed, epoch)
    and dealt out to DDP ranks, then to DataLoader workers, so every sample is read once per
    epoch. Within a worker, a shuffle buffer mixes samples of several shards. The stream repeats
    epochs forever; training length is counted in steps."""

    def __init__(self, roots: list[str | Path], hw: tuple[int, int], seed: int = 0, buffer: int = 256,
                 augment: bool = True, epochs: int | None = None, skip_corrupt: bool = False):
        self.datasets = [DatasetReader(r) for r in roots]
        self.shards = [(ds, rec) for ds in self.datasets for rec in ds.shards]
        if not self.shards:
            raise ShardError(f"{', '.join(map(str, roots))}: no committed shards to train on")
        self.hw, self.seed, self.buffer, self.augment, self.epochs = hw, seed, buffer, augment, epochs
        self.skip_corrupt = skip_corrupt

    def __len__(self) -> int:
        return sum(rec["count"] for _, rec in self.shards)

    def _order(self, epoch: int) -> list[int]:
        order = list(range(len(self.shards)))
        random.Random(self.seed * EPOCH_SEED_STRIDE + epoch).shuffle(order)
        return order

    def _my_shards(self, epoch: int) -> list:
        rank, world = _rank_world()
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        return [self.shards[i] for i in self._order(epoch)[rank * nw + wid::world * nw]]

    def rank_shards(self, epoch: int, rank: int, world: int, workers: int) -> list[str]:
        """Names of the shards DDP rank `rank` reads in `epoch` (all its DataLoader workers together: worker w of
        nw takes positions rank * nw + w, stepping world * nw, of the epoch's order). Ranks never share one."""
        nw = max(1, workers)
        return [self.shards[i][1]["name"] for p, i in enumerate(self._order(epoch)) if (p // nw) % world == rank]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rank, _ = _rank_world()
        info = get_worker_info()
        rng = random.Random(f"{self.seed}-{rank}-{info.id if info else 0}")
        buf: list[dict[str, torch.Tensor]] = []
        epoch = skipped = 0
        _, world = _rank_world()
        if len(self.shards) < world:
            # a rank without data would leave the others waiting in every collective
            raise ShardError(f"fewer shards ({len(self.shards)}) than DDP ranks ({world}); render more or smaller shards")
        while self.epochs is None or epoch < self.epochs:
            mine = self._my_shards(epoch)
            if not mine:
                return  # more DataLoader workers than shards: this one idles, the others read
            for ds, rec in mine:
                try:
                    # each shard's sha256 is checked as it is read: a flipped bit is an error, not wrong depth
                    for s in ds.iter_samples([rec]):
                        item = resize_crop(to_tensors(s.rgb, s.depth, thing_ids(s)), self.hw, rng if self.augment else None)
                        if self.augment:
                            item = augment(item, rng)
                        buf.append(dict(item, sim=torch.tensor(True)))
                        if len(buf) >= self.buffer:
                            yield buf.pop(rng.randrange(len(buf)))
                except ShardError as e:
                    if not self.skip_corrupt:
                        raise
                    skipped += 1
                    print(f"distill: skipped {e} ({skipped} shard read(s) skipped by this reader)", file=sys.stderr)
            epoch += 1
        rng.shuffle(buf)
        yield from buf


def first_samples(root: str | Path, hw: tuple[int, int], n: int) -> dict[str, torch.Tensor]:
    """The first n samples of a simgen dataset (shard order, centre-cropped to hw, no augmentation),
    stacked: rgb, depth, inst, sim."""
    stream = ShardStream([root], hw, augment=False, epochs=1, buffer=1)
    items = [item for _, item in zip(range(n), iter(stream))]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SHOWN_UNREADABLE = 3  # unreadable files named in a message; the rest are counted


def list_images(source: str | Path) -> list[Path]:
    """Image files of a folder (searched recursively, sorted), or of a text file listing one path per
    line (relative to the file's folder; # starts a comment)."""
    source = Path(source)
    if source.is_dir():
        return sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if source.is_file() and source.suffix.lower() == ".txt":
        lines = (line.split("#")[0].strip() for line in source.read_text().splitlines())
        return [source.parent / line for line in lines if line]
    raise DataError(f"--images {source}: not a folder of images or a .txt list of image paths")


def readable_images(source: str | Path) -> list[Path]:
    """The images of `source` whose header PIL reads; says how many others were skipped. Raises
    DataError when none is readable. (Files damaged past their header are skipped while training.)"""
    paths, bad, depth_maps = list_images(source), [], []
    good = []
    for path in paths:
        try:
            with Image.open(path) as im:  # the header is parsed on open: a file that is not an image fails here
                # 16-bit or float single-channel PNGs are depth maps (an RGB-D folder), not photos
                (depth_maps if im.mode.startswith(("I", "F")) else good).append(path)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            bad.append(f"{path.name} ({type(e).__name__})")
    if depth_maps:
        print(f"distill: --images {source}: {len(depth_maps)} single-channel 16-bit or float image(s) skipped as "
              f"depth maps, e.g. {depth_maps[0].name}", file=sys.stderr)
    if not good:
        raise DataError(f"--images {source}: no readable jpg/png photo among {len(paths)} file(s)"
                        + (f", e.g. {', '.join(bad[:SHOWN_UNREADABLE])}" if bad else "")
                        + (f" ({len(depth_maps)} depth maps)" if depth_maps else ""))
    if bad:
        print(f"distill: --images {source}: {len(bad)} of {len(paths)} files unreadable, skipped: "
              f"{', '.join(bad[:SHOWN_UNREADABLE])}{' ...' if len(bad) > SHOWN_UNREADABLE else ''}", file=sys.stderr)
    return good


class ImageStream(IterableDataset):
    """Unlabeled images (--images) for plain KD, in the same item layout as ShardStream (depth and
    instance ids are zero: they have none, so object-wise mixing leaves them alone; `sim` is
    False). Files are shuffled per epoch with (seed, epoch) and dealt to ranks and workers; a file
    that fails to decode is skipped and counted, never fatal."""

    def __init__(self, paths: list[Path], hw: tuple[int, int], seed: int = 0, augment: bool = True):
        if not paths:
            raise DataError("no images to train on")
        self.paths, self.hw, self.seed, self.augment = paths, hw, seed, augment

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rank, world = _rank_world()
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        rng = random.Random(f"images-{self.seed}-{rank}-{wid}")
        epoch = skipped = 0
        while True:
            order = list(range(len(self.paths)))
            random.Random(self.seed * EPOCH_SEED_STRIDE + epoch).shuffle(order)
            mine = order[rank * nw + wid::world * nw] or order  # fewer images than readers: all read all
            yielded = 0
            for i in mine:
                try:
                    with Image.open(self.paths[i]) as im:
                        rgb = np.array(im.convert("RGB"))
                except (OSError, SyntaxError, ValueError) as e:
                    skipped += 1
                    print(f"distill: skipped {self.paths[i]}: unreadable ({e}); {skipped} skipped by this reader",
                          file=sys.stderr)
                    continue
                item = resize_crop(to_tensors(rgb, np.zeros(rgb.shape[:2], np.float32)), self.hw,
                                   rng if self.augment else None)
                if self.augment:
                    item = augment(item, rng)
                yielded += 1
                yield dict(item, sim=torch.tensor(False))
            if not yielded:
                raise DataError(f"none of {len(mine)} images could be read ({self.paths[mine[0]].parent})")
            epoch += 1


class Interleaved(IterableDataset):
    """Batches of `counts[0]` samples of the first stream then `counts[1]` of the second: with a
    DataLoader of batch size sum(counts), every batch holds exactly that share of each."""

    def __init__(self, first: IterableDataset, second: IterableDataset, counts: tuple[int, int]):
        self.first, self.second, self.counts = first, second, counts

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        a, b = iter(self.first), iter(self.second)
        while True:
            try:
                batch = [next(a) for _ in range(self.counts[0])] + [next(b) for _ in range(self.counts[1])]
            except StopIteration:  # a reader with no shards of its own (more workers than shards)
                return
            yield from batch


class RGBDFolder(Dataset):
    """Real RGB-D frames for evaluation and teacher fitting, in a folder or at a URL (s3://bucket/prefix).

    Either `rgb/NAME.(png|jpg)` + `depth/NAME.png` (16-bit, metres x depth_scale), or a folder with
    `index.csv` (columns rgb, depth, and optionally split, scene; paths relative to the folder), or
    a simgen dataset (manifest.json)."""

    def __init__(self, root: str | Path, depth_scale: float = 1000.0, split: str | None = None,
                 hw: tuple[int, int] | None = None):
        self.root, self.depth_scale, self.hw = store.location(str(root)), float(depth_scale), hw
        self.items: list[dict[str, Any]] = []
        self.shards: DatasetReader | None = None
        store.open_store(self.root)
        if store.exists(store.join(self.root, MANIFEST)):  # one sample at a time: memory stays flat in its size
            self.shards = DatasetReader(self.root)
            for record in self.shards.shards:
                path = self.shards.shard_path(record)
                index = index_shard(path, record["sha256"])
                self.items += [{"name": f"{k:09d}", "scene": "", "shard": path, "index": k, "members": index[k]}
                               for k in sorted(index)]
        elif store.exists(store.join(self.root, "index.csv")):
            text = store.read_bytes(store.join(self.root, "index.csv")).decode()
            for row in csv.DictReader(io.StringIO(text, newline="")):
                if split and row.get("split") and row["split"] != split:
                    continue
                self.items.append({"rgb": store.join(self.root, row["rgb"]), "depth": store.join(self.root, row["depth"]),
                                   "name": Path(row["rgb"]).stem, "scene": row.get("scene", "")})
        elif store.listing(store.join(self.root, "rgb")) and store.listing(store.join(self.root, "depth")):
            depths = store.listing(store.join(self.root, "depth"))
            for name in sorted(store.listing(store.join(self.root, "rgb"))):
                stem, suffix = name.rpartition(".")[::2]
                if f".{suffix.lower()}" in (".png", ".jpg", ".jpeg"):
                    if f"{stem}.png" not in depths:
                        raise DataError(f"{store.join(self.root, 'depth', stem + '.png')}: no depth for {name}")
                    self.items.append({"rgb": store.join(self.root, "rgb", name), "name": stem, "scene": "",
                                       "depth": store.join(self.root, "depth", f"{stem}.png")})
        else:
            raise DataError(f"{self.root}: expected rgb/ and depth/ folders, an index.csv, or a simgen dataset")
        if not self.items:
            raise DataError(f"{self.root}: no frames" + (f" in split {split!r}" if split else ""))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        it = self.items[i]
        if self.shards is not None:
            s = read_sample(it["shard"], it["members"], it["index"], self.shards.depth_scale)
            item = to_tensors(s.rgb, s.depth)
            it = {**it, "scene": s.meta.get("scene_family", "")}
        else:
            try:
                with Image.open(io.BytesIO(store.read_bytes(it["rgb"]))) as im:
                    rgb = np.array(im.convert("RGB"))
                with Image.open(io.BytesIO(store.read_bytes(it["depth"]))) as im:
                    depth = np.array(im)
            except OSError as e:
                raise DataError(f"{it['rgb']} / {it['depth']}: unreadable ({e})") from None
            if depth.dtype == np.uint8 or depth.ndim != 2:
                raise DataError(f"{it['depth']}: an {depth.dtype} depth image of shape {depth.shape}; depth must be a "
                                "single-channel 16-bit PNG (uint16) of metres x --depth-scale (1000: millimetres, "
                                "NYU-style; 256: KITTI-style)")
            depth = depth.astype(np.float32) / self.depth_scale
            item = to_tensors(rgb, depth)
        if self.hw:
            item = resize_crop(item, self.hw, None)
        return {"rgb": item["rgb"], "depth": item["depth"], "name": it["name"], "scene": it["scene"]}
