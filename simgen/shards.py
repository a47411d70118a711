"""The shard format (v1): the one contract between `simgen` (writes) and `distill` (reads).

This module is the only place that knows how a dataset is laid out on disk. It needs numpy,
Pillow and the standard library only: no `bpy`, no `torch`. docs/shard-format.md describes the
same format for people.

    OUT/manifest.json
    OUT/shards/shard-000000.tar, ...     WebDataset layout: members KEY.EXT
    OUT/commits/shard-000000.tar.json    (URL datasets: s3://..., simgen/store.py) a committed shard's record

Per sample (KEY = zero-padded global sample index): KEY.rgb.png (8-bit sRGB), KEY.depth.png
(16-bit planar z-depth, metres x depth_scale, 0 = invalid), KEY.inst.png (16-bit instance ids,
0 = none), KEY.json (camera, instances, scene record).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import secrets
import socket
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from PIL import Image

from simgen import store
from simgen.store import Location

FORMAT_NAME = "simgen-shards"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SHARD_DIR = "shards"
COMMIT_DIR = "commits"  # URL datasets: one record object per committed shard (docs/shard-format.md, "Commits")
KEY_DIGITS = 9
SHARD_SUFFIX = ".tar"
TMP_MARK = ".tmp-"  # a file being written: shard-000003.tar.tmp-<host>-<pid>-<random>; never read
EXTENSIONS = ("rgb.png", "depth.png", "inst.png", "json")


class ShardError(Exception):
    """A dataset, shard or sample that cannot be read; the message names which."""


@dataclass
class Sample:
    """One rendered view. depth is float32 metres (0 = invalid); inst is uint16 (0 = none)."""

    index: int
    rgb: np.ndarray
    depth: np.ndarray
    inst: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.index:0{KEY_DIGITS}d}"


# ----------------------------------------------------------------------------------- encoding


def encode_depth(depth_m: np.ndarray, depth_scale: float) -> np.ndarray:
    """Metres -> uint16 units. Non-finite, non-positive and unrepresentably far depths become 0."""
    d = np.asarray(depth_m, dtype=np.float64) * depth_scale
    valid = np.isfinite(d) & (d > 0.5) & (d <= 65535)
    return np.where(valid, np.rint(np.where(valid, d, 0)), 0).astype(np.uint16)


def decode_depth(units: np.ndarray, depth_scale: float) -> np.ndarray:
    """uint16 units -> float32 metres; 0 stays 0 (invalid)."""
    return units.astype(np.float32) / np.float32(depth_scale)


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    # uint16 HxW arrays become mode "I;16", which Pillow writes as 16-bit greyscale PNG.
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _png_array(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        arr = np.array(im)
    if arr.dtype in (np.int32, np.uint32, np.int64):  # Pillow may widen 16-bit greyscale
        arr = arr.astype(np.uint16)
    return arr


def encode_sample(sample: Sample, depth_scale: float) -> dict[str, bytes]:
    assert sample.rgb.dtype == np.uint8 and sample.rgb.ndim == 3, "rgb must be HxWx3 uint8"
    assert sample.inst.max(initial=0) <= 65535, "instance ids must fit 16 bits"
    return {
        "rgb.png": _png_bytes(np.ascontiguousarray(sample.rgb)),
        "depth.png": _png_bytes(encode_depth(sample.depth, depth_scale)),
        "inst.png": _png_bytes(np.ascontiguousarray(sample.inst.astype(np.uint16))),
        "json": json.dumps(sample.meta, sort_keys=True).encode(),
    }


def decode_sample(index: int, members: dict[str, bytes], depth_scale: float) -> Sample:
    missing = [e for e in EXTENSIONS if e not in members]
    if missing:
        raise ShardError(f"sample {index:0{KEY_DIGITS}d} lacks {', '.join(missing)}")
    return Sample(
        index=index,
        rgb=_png_array(members["rgb.png"])[..., :3],
        depth=decode_depth(_png_array(members["depth.png"]), depth_scale),
        inst=_png_array(members["inst.png"]).astype(np.uint16),
        meta=json.loads(members["json"]),
    )


# ---------------------------------------------------------------------------------- shard files


def shard_name(shard_index: int) -> str:
    return f"shard-{shard_index:06d}{SHARD_SUFFIX}"


def temporary_name(path: Path) -> Path:
    """Where a shard or manifest is written before its rename: NAME.tmp-HOST-PID-RANDOM (the host
    and pid tell a rerun whether the writer is still alive)."""
    return path.with_name(f"{path.name}{TMP_MARK}{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}")


def writer_alive(tmp: Path) -> bool:
    """Whether the process writing temporary file `tmp` may still be running. A writer on another
    host counts as alive (a shared file system cannot tell); one of this process, or gone, not."""
    parts = tmp.name.rpartition(TMP_MARK)[2].rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    host, pid = parts[0], parts[1]
    if host and host != socket.gethostname():
        return True
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stage_shard(path: Path, samples: list[Sample], depth_scale: float) -> dict[str, Any]:
    """Write samples to a temporary file beside `path` (fsynced). Returns the shard's manifest
    record with "staged" = the temporary file; `commit_shard` renames it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for s in samples:
                for ext, data in encode_sample(s, depth_scale).items():
                    info = tarfile.TarInfo(f"{s.key}.{ext}")
                    info.size = len(data)
                    info.mtime = 0  # byte-identical shards for identical samples
                    tar.addfile(info, io.BytesIO(data))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk or a kill leaves no temporary file behind
        raise
    return {
        "name": path.name,
        "first_index": samples[0].index if samples else None,
        "count": len(samples),
        "sha256": store.sha256(tmp),
        "bytes": tmp.stat().st_size,
        "staged": str(tmp),
    }


def write_shard(path: Path, samples: list[Sample], depth_scale: float) -> dict[str, Any]:
    """Write samples to `path` atomically (a temporary name first, renamed when complete), outside
    any dataset. Returns the shard's record (name, first_index, count, sha256, bytes)."""
    record = stage_shard(path, samples, depth_scale)
    os.replace(record.pop("staged"), path)
    return record


def read_shard(path: Location) -> bytes:
    """A shard file's bytes (one read, or one GET from a store)."""
    try:
        return store.read_bytes(path)
    except FileNotFoundError:
        raise ShardError(f"{path}: listed in the manifest but missing (rerun the `simgen render` command that made "
                         "it to repair it)") from None
    except store.StoreError:
        raise
    except OSError as e:
        raise ShardError(f"{path}: unreadable shard ({e.strerror or e})") from None


def iter_shard(path: Location, depth_scale: float, sha256: str | None = None,
               data: bytes | None = None) -> Iterator[Sample]:
    """Samples of one shard file, in order (`data`: its bytes, when already read). With `sha256`, the
    bytes are checked against it first (one hash of bytes that are read anyway). Errors name the shard
    and the sample."""
    current: int | None = None
    members: dict[str, bytes] = {}
    if data is None:
        data = read_shard(path)
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ShardError(f"{path}: checksum mismatch: the file changed after it was committed (rerun the "
                         "`simgen render` command that made it to repair it)")
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                key, _, ext = info.name.partition(".")
                if not key.isdigit():
                    raise ShardError(f"unexpected member {info.name!r}")
                index = int(key)
                if current is not None and index != current:
                    yield decode_sample(current, members, depth_scale)
                    members = {}
                current = index
                members[ext] = tar.extractfile(info).read()
            if current is not None:
                yield decode_sample(current, members, depth_scale)
    except ShardError as e:
        raise ShardError(f"{path}: {e}") from None
    except (tarfile.TarError, OSError, ValueError, EOFError) as e:
        where = f" near sample {current:0{KEY_DIGITS}d}" if current is not None else ""
        raise ShardError(f"{path}{where}: corrupt or truncated shard ({e})") from None


def index_shard(path: Location, sha256: str | None = None) -> dict[int, dict[str, tuple[int, int]]]:
    """Where each sample's members lie in a shard file, {index: {ext: (offset, size)}}, so that one sample
    can be read without the others (`read_sample`). With `sha256` the file is checked against it first."""
    try:
        if sha256 is not None and store.sha256(path) != sha256:
            raise ShardError(f"{path}: checksum mismatch: the file changed after it was committed (rerun the "
                             "`simgen render` command that made it to repair it)")
        index: dict[int, dict[str, tuple[int, int]]] = {}
        with store.open_binary(path) as f, tarfile.open(fileobj=f, mode="r") as tar:
            for info in tar:
                key, _, ext = info.name.partition(".")
                if info.isfile() and key.isdigit():
                    index.setdefault(int(key), {})[ext] = (info.offset_data, info.size)
        return index
    except store.StoreError:
        raise
    except (tarfile.TarError, OSError) as e:
        raise ShardError(f"{path}: corrupt or truncated shard ({e})") from None


def read_sample(path: Location, members: dict[str, tuple[int, int]], index: int, depth_scale: float) -> Sample:
    """One sample of a shard file, from its members' places (`index_shard`)."""
    try:
        with store.open_binary(path) as f:
            data = {}
            for ext, (offset, size) in members.items():
                f.seek(offset)
                data[ext] = f.read(size)
        return decode_sample(index, data, depth_scale)
    except (OSError, ValueError) as e:
        raise ShardError(f"{path} sample {index:0{KEY_DIGITS}d}: unreadable ({e})") from None


def shard_sample_count(path: Location) -> int:
    """How many samples a shard file holds (its distinct keys), from the tar's member list."""
    try:
        with store.open_binary(path) as f, tarfile.open(fileobj=f, mode="r") as tar:
            return len({info.name.partition(".")[0] for info in tar if info.isfile()})
    except (tarfile.TarError, OSError) as e:
        raise ShardError(f"{path}: corrupt or truncated shard ({e})") from None


# ------------------------------------------------------------------------------------ manifests


def manifest_path(root: Location) -> Location:
    return store.join(root, MANIFEST)


def commit_path(root: Location, name: str) -> Location:
    """Where a URL dataset records committed shard `name` (docs/shard-format.md, "Commits")."""
    return store.join(root, COMMIT_DIR, f"{name}.json")


def load_manifest(root: Location) -> dict[str, Any] | None:
    """The dataset manifest, or None when there is none. A foreign or broken one is an error. For a URL
    dataset, the shards are those of manifest.json and of the commit records (the fuller record wins)."""
    path = manifest_path(root)
    try:
        manifest = json.loads(store.read_bytes(path))
    except FileNotFoundError:
        return None
    except store.StoreError:
        raise
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ShardError(f"{path}: unreadable manifest ({e})") from None
    if isinstance(manifest, dict) and store.is_url(root) and isinstance(manifest.get("shards"), dict):
        for record in commit_records(root):
            old = manifest["shards"].get(record.get("name"))
            if old is None or (record.get("count") or 0) > (old.get("count") or 0):
                manifest["shards"][record.get("name")] = record
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ShardError(f"{path}: not a {FORMAT_NAME} manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise ShardError(
            f"{path}: shard format version {manifest.get('version')}, this reader knows {FORMAT_VERSION}"
        )
    problem = manifest_problem(manifest)
    if problem:
        raise ShardError(f"{path}: {problem} (a hand-edited manifest?)")
    return manifest


SHARD_NAME = re.compile(r"shard-(\d{6})\.tar")


def manifest_problem(manifest: dict[str, Any]) -> str | None:
    """What makes a manifest unusable, or None: missing or mistyped fields, and shard records that are not
    plain shard file names inside the dataset, or do not sit where the writer splits shards (so that no
    sample can be listed twice)."""
    depth, per_shard, n = manifest.get("depth"), manifest.get("samples_per_shard"), manifest.get("n", 0)
    if not isinstance(depth, dict) or not _number(depth.get("scale")) or not depth["scale"] > 0:
        return "depth.scale must be a positive number"
    if not _whole(per_shard) or per_shard < 1:
        return "samples_per_shard must be a whole number of at least 1"
    if n is not None and (not _whole(n) or n < 0):
        return "n must be a whole number or null"
    if not isinstance(manifest.get("shards"), dict):
        return "shards must be an object of shard records"
    for key, r in manifest["shards"].items():
        m = SHARD_NAME.fullmatch(key)
        if not m or not isinstance(r, dict) or r.get("name") != key:
            return f"shard record {key!r}: not a shard file name of this dataset (shard-NNNNNN.tar, named as its key)"
        if not (_whole(r.get("first_index")) and _whole(r.get("count")) and _whole(r.get("bytes"))
                and isinstance(r.get("sha256"), str)):
            return f"shard record {key!r}: first_index, count, bytes and sha256 are required"
        if r["first_index"] != int(m.group(1)) * per_shard or not 1 <= r["count"] <= per_shard:
            return (f"shard record {key!r}: samples {r['first_index']}+{r['count']} are not where shard "
                    f"{int(m.group(1))} of {per_shard} samples lies")
    return None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def new_manifest(*, depth_scale: float, max_depth_m: float, samples_per_shard: int, n: int | None,
                 config: dict[str, Any], seed: int, generator: str, **extra: Any) -> dict[str, Any]:
    """The manifest of a new, empty dataset: the only place its fields are assembled.

    `n` is the number of samples the dataset will hold (None while a writer does not know it yet:
    the dataset counts as incomplete until it is set). `extra` adds producer-specific fields."""
    return {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "generator": generator,
        "config": config, "seed": seed, "n": n, "samples_per_shard": samples_per_shard,
        "depth": {"scale": float(depth_scale), "unit": "m", "kind": "planar z (along the optical axis)",
                  "invalid": 0, "max_m": float(max_depth_m)},
        "instances": {"none": 0, "ids": "per sample JSON 'instances': id, category, asset, thing"},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "shards": {},
        **extra,
    }


def shard_spans(n: int, samples_per_shard: int) -> Iterator[tuple[int, int, int]]:
    """(shard index, first sample, end) of every shard of an n-sample dataset: where shards split."""
    for k in range(math.ceil(n / samples_per_shard)):
        yield k, k * samples_per_shard, min(n, (k + 1) * samples_per_shard)


def save_manifest(root: Location, manifest: dict[str, Any], create: bool = False) -> bool:
    """Replace the manifest atomically (locally a temporary file, fsynced, renamed; in a store one upload).
    `create`: only if there is none yet; False when another writer's was there first."""
    return store.write_bytes(manifest_path(root), (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode(),
                             create=create)


def commit_records(root: Location) -> list[dict[str, Any]]:
    """The commit records of a URL dataset (read together: one listing, then the records)."""
    paths = [store.join(root, COMMIT_DIR, n) for n in sorted(store.listing(store.join(root, COMMIT_DIR)))
             if n.endswith(".json")]
    records = []
    for path, data in store.read_many(paths).items():
        try:
            records.append(json.loads(data))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ShardError(f"{path}: unreadable commit record ({e})") from None
    return records
