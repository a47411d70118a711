"""A dataset of shards (simgen/shards.py has the format): committing shards under the manifest lock,
the writer that decides where shards split, and the reader every consumer goes through.

Several processes (local workers, job-array tasks on a shared file system) may commit shards to one
dataset: each shard is written under a temporary name, then renamed and recorded in the manifest
under an exclusive lock. A reader sees committed shards only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Any, Iterator

from simgen.runs import sha256_file
from simgen.shards import (MANIFEST, SHARD_DIR, Sample, ShardError, iter_shard, load_manifest, new_manifest,
                           save_manifest, shard_name, shard_sample_count, stage_shard)


@contextlib.contextmanager
def manifest_lock(root: Path) -> Iterator[None]:
    """Exclusive lock for read-modify-write of the manifest: several processes (local workers,
    job-array tasks on a shared file system) may commit shards to one dataset."""
    lock = Path(root) / ".manifest.lock"
    try:  # never through a link: a linked lock file would create or touch a file outside the dataset
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
    except OSError:
        if lock.is_symlink():
            raise ShardError(f"{lock} is a link; remove it (a dataset's lock file is its own)") from None
        raise
    with os.fdopen(fd, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def shard_intact(root: Path, record: dict[str, Any], verify: bool = False) -> bool:
    """Cheap check of a committed shard file: present, of its recorded size and modification time
    (a file whose time changed, e.g. copied, is hashed once). `verify`: always compare the sha256."""
    path = Path(root) / SHARD_DIR / record["name"]
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_size != record["bytes"]:
        return False
    if verify or record.get("mtime_ns") != st.st_mtime_ns:
        return sha256_file(path) == record["sha256"]
    return True


def commit_shard(root: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Make a written shard part of the dataset, under the manifest lock: rename a staged file
    into place (see `stage_shard`) and record it. A shard is committed once: when the dataset
    already holds an intact shard of that name with at least these samples, it stays and the new
    file is dropped; the same name with the same count but other contents is an error. Returns
    the record that is committed."""
    root = Path(root)
    staged = record.pop("staged", None)
    final = root / SHARD_DIR / record["name"]
    with manifest_lock(root):
        manifest = load_manifest(root)
        if manifest is None:
            raise ShardError(f"{root}: no {MANIFEST} to commit {record['name']} to")
        old = manifest["shards"].get(record["name"])
        # the old file is hashed: a shard rendered again to repair one (render --verify) must replace a file
        # whose size and time are unchanged but whose bytes are not
        if old is not None and old["count"] >= record["count"] and shard_intact(root, old, verify=True):
            if staged:
                Path(staged).unlink(missing_ok=True)
            if old["count"] == record["count"] and old["sha256"] != record["sha256"]:
                raise ShardError(f"{root}: {record['name']} is already committed with other contents (another job "
                                 "writes into this dataset with other options?); nothing was replaced")
            return old
        if staged:
            os.replace(staged, final)
        record["mtime_ns"] = final.stat().st_mtime_ns
        manifest["shards"][record["name"]] = record
        save_manifest(root, manifest)
        return record


# -------------------------------------------------------------------------------------- writing


def holds_complete_dataset(root: str | os.PathLike, config: dict[str, Any]) -> bool:
    """For scripts that derive a dataset once: True when `root` holds a complete dataset written
    with `config` (reuse it), False when `root` is absent or empty (write it). Anything else there
    is an error naming what differs: it is never overwritten."""
    root = Path(root)
    if not root.exists() or not any(root.iterdir()):
        return False
    manifest = load_manifest(root)
    if manifest is None:
        raise ShardError(f"{root} holds other files and no {MANIFEST}; choose another directory")
    if manifest["config"] != config:
        raise ShardError(f"{root} holds a dataset made with another config ({manifest['config']}); "
                         "remove it or choose another directory")
    if not DatasetReader(root).complete:
        raise ShardError(f"{root} holds an unfinished dataset (its writer was interrupted); remove it to write it again")
    return True


class DatasetWriter:
    """Writes a new dataset sample by sample: decides where shards split, writes each shard
    atomically, commits it to the manifest, and sets the sample count when closed.

        with DatasetWriter(root, depth_scale=1000.0, max_depth_m=10.0, generator="my script") as w:
            for sample in samples:       # sample.index must run 0, 1, 2, ...
                w.add(sample)

    A dataset left unclosed (an exception, a kill) has n = None and reads as incomplete. `simgen
    render` uses the same pieces (new_manifest, shard_spans, stage_shard, commit_shard) per shard."""

    def __init__(self, root: str | os.PathLike, *, depth_scale: float, max_depth_m: float,
                 samples_per_shard: int = 64, config: dict[str, Any] | None = None, seed: int = 0,
                 generator: str = "simgen.shards.DatasetWriter", **extra: Any):
        self.root = Path(root)
        if self.root.exists() and any(self.root.iterdir()):
            raise ShardError(f"{self.root} is not empty; a new dataset needs an empty or new directory")
        if samples_per_shard < 1:
            raise ShardError(f"samples_per_shard must be at least 1, got {samples_per_shard}")
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifest = new_manifest(depth_scale=depth_scale, max_depth_m=max_depth_m, n=None,
                                     samples_per_shard=samples_per_shard, config=config or {}, seed=seed,
                                     generator=generator, **extra)
        save_manifest(self.root, self.manifest)
        self.count = 0
        self._pending: list[Sample] = []

    def add(self, sample: Sample) -> None:
        if sample.index != self.count:
            raise ShardError(f"{self.root}: sample {sample.index} added where {self.count} was next")
        self._pending.append(sample)
        self.count += 1
        if len(self._pending) == self.manifest["samples_per_shard"]:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            k = self._pending[0].index // self.manifest["samples_per_shard"]
            path = self.root / SHARD_DIR / shard_name(k)
            commit_shard(self.root, stage_shard(path, self._pending, self.manifest["depth"]["scale"]))
            self._pending = []

    def close(self) -> None:
        """Write the last (short) shard and mark the dataset complete."""
        self._flush()
        with manifest_lock(self.root):
            manifest = load_manifest(self.root)
            manifest["n"] = self.count
            save_manifest(self.root, manifest)

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


# -------------------------------------------------------------------------------------- reading


class DatasetReader:
    """Read access to a finished or growing dataset: only committed shards are visible. Every
    reader (inspect, preview, training, evaluation) goes through `iter_samples`."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        manifest = load_manifest(self.root)
        if manifest is None:
            raise ShardError(f"{self.root}: no {MANIFEST}; not a simgen dataset (render one with `simgen render`)")
        self.manifest = manifest
        self.depth_scale = float(manifest["depth"]["scale"])

    @property
    def shards(self) -> list[dict[str, Any]]:
        return sorted(self.manifest["shards"].values(), key=lambda r: r["first_index"])

    def shard_path(self, record: dict[str, Any]) -> Path:
        return self.root / SHARD_DIR / record["name"]

    def __len__(self) -> int:
        return sum(r["count"] for r in self.shards)

    @property
    def complete(self) -> bool:
        """All samples the manifest asks for are committed."""
        return self.manifest.get("n") is not None and len(self) >= self.manifest["n"]

    def iter_samples(self, shard_records: list[dict[str, Any]] | None = None, verify: bool = True) -> Iterator[Sample]:
        """Samples of the given committed shards (default: all), each shard checked against its
        sha256 as it is read (verify=False skips that)."""
        for record in self.shards if shard_records is None else shard_records:
            path = self.shard_path(record)
            if not path.exists():
                raise ShardError(f"{path}: listed in the manifest but missing (rerun the `simgen render` command "
                                 "that made it to repair it)")
            count = 0
            for count, sample in enumerate(iter_shard(path, self.depth_scale, record["sha256"] if verify else None), 1):
                yield sample
            if count != record["count"]:
                raise ShardError(f"{path}: holds {count} samples, the manifest says {record['count']}")

    def verify(self, record: dict[str, Any]) -> str | None:
        """None when the shard file matches its checksum and holds the samples its record counts, else what
        is wrong."""
        if not self.shard_path(record).exists():
            return "missing"
        if not shard_intact(self.root, record, verify=True):
            return "checksum mismatch"
        held = shard_sample_count(self.shard_path(record))
        return None if held == record["count"] else f"holds {held} samples, the manifest says {record['count']}"
