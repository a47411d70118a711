"""A dataset of shards (simgen/shards.py has the format): committing shards, the writer that decides where
shards split, and the reader every consumer goes through. A reader sees committed shards only.

Two commit protocols, one per kind of location (docs/shard-format.md, "Writing rules"):
- a local folder: each shard is written under a temporary name, then renamed and recorded in the manifest
  under an exclusive lock, so local workers and job-array tasks on one file system can share a dataset;
- a URL (an object store, or file:// on a file system whose locks cannot be trusted): lock-free. A shard is
  uploaded whole under its final name, then its record (with its sha256) is written as its own object under
  commits/. Shard k is a function of (config, seed, k), so two writers of one shard write the same bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

from simgen import store
from simgen.runs import sha256_file
from simgen.shards import (MANIFEST, SHARD_DIR, Sample, ShardError, commit_path, iter_shard, load_manifest,
                           new_manifest, read_shard, save_manifest, shard_name, shard_sample_count, stage_shard)
from simgen.store import Location

# shards a reader fetches ahead of the one it decodes: a store's latency hides behind decoding
READ_AHEAD = 2


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


def commit_shard(root: Location, record: dict[str, Any]) -> dict[str, Any]:
    """Make a written shard part of the dataset: locally under the manifest lock, rename a staged file
    into place (see `stage_shard`) and record it; at a URL, `publish_shard`. A shard is committed once:
    when the dataset already holds an intact shard of that name with at least these samples, it stays and
    the new file is dropped; the same name with the same count but other contents is an error. Returns
    the record that is committed."""
    if store.is_url(root):
        return publish_shard(root, record)
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


def publish_shard(root: str, record: dict[str, Any]) -> dict[str, Any]:
    """The lock-free commit of a URL dataset: upload the staged file whole under its final name, then write its
    record to commits/. A record therefore always names a whole shard and its sha256; a writer killed between
    the two leaves a shard without a record, which a rerun renders again (same bytes)."""
    staged = record.pop("staged", None)
    try:
        old = committed(root, record["name"], 0)
        if old is not None and old["count"] >= record["count"]:
            if old["count"] == record["count"] and old["sha256"] != record["sha256"]:
                raise ShardError(f"{root}: {record['name']} is already committed with other contents (another job "
                                 "writes into this dataset with other options?); nothing was replaced")
            if _object_sha256(store.join(root, SHARD_DIR, old["name"])) == old["sha256"]:
                return old  # hashed: a shard rendered again to repair one must replace a damaged object
        if staged:
            store.upload(Path(staged), store.join(root, SHARD_DIR, record["name"]))
        store.write_bytes(commit_path(root, record["name"]), json.dumps(record, sort_keys=True).encode())
        return record
    finally:
        if staged:
            Path(staged).unlink(missing_ok=True)


def consolidate(root: str) -> None:
    """Write a URL dataset's manifest.json with every committed shard, once all that its n asks for are there:
    readers (and webdataset users) then find the shard list in one object. Any driver may do it: each writes
    the same list; the commit records stay the truth."""
    manifest = load_manifest(root)
    if manifest is not None and DatasetReader(root, manifest).complete:
        save_manifest(root, manifest)


def committed(root: str, name: str, count: int = 1) -> dict[str, Any] | None:
    """A URL dataset's commit record of shard `name` when it holds at least `count` samples, else None."""
    try:
        record = json.loads(store.read_bytes(commit_path(root, name)))
    except FileNotFoundError:
        return None
    return record if record["count"] >= count else None


def finish_shard(root: str, name: str, samples: list[Sample], depth_scale: float, **fields: Any) -> dict[str, Any]:
    """A worker's finished shard (`fields` join its record). In a folder it is staged beside its final name, for
    the runner to commit; at a URL it is staged on this machine's disk, then uploaded and committed here."""
    url = store.is_url(root)
    folder = Path(tempfile.gettempdir()) if url else Path(root) / SHARD_DIR
    record = {**stage_shard(folder / name, samples, depth_scale), **fields}
    return publish_shard(root, record) if url else record


def _object_sha256(loc: Location) -> str | None:
    try:
        return store.sha256(loc)
    except FileNotFoundError:
        return None


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
        self.root = store.location(os.fspath(root))
        store.open_store(self.root)
        if store.listing(self.root):
            raise ShardError(f"{self.root} is not empty; a new dataset needs an empty or new directory")
        if samples_per_shard < 1:
            raise ShardError(f"samples_per_shard must be at least 1, got {samples_per_shard}")
        if not store.is_url(self.root):
            self.root.mkdir(parents=True, exist_ok=True)
        # a URL dataset's shards are staged on local disk, then uploaded whole
        self._staging = Path(tempfile.mkdtemp(prefix="simgen-stage-")) if store.is_url(self.root) else None
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
            path = (self._staging or self.root / SHARD_DIR) / shard_name(k)
            commit_shard(self.root, stage_shard(path, self._pending, self.manifest["depth"]["scale"]))
            self._pending = []

    def close(self) -> None:
        """Write the last (short) shard and mark the dataset complete."""
        self._flush()
        if self._staging is not None:  # a URL dataset has one writer here: no lock to take
            manifest = load_manifest(self.root)
            manifest["n"] = self.count
            save_manifest(self.root, manifest)
            self._staging.rmdir()
            return
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

    def __init__(self, root: str | os.PathLike, manifest: dict[str, Any] | None = None):
        self.root = store.location(os.fspath(root))
        if manifest is None:
            store.open_store(self.root)
            manifest = load_manifest(self.root)
        if manifest is None:
            raise ShardError(f"{self.root}: no {MANIFEST}; not a simgen dataset (render one with `simgen render`)")
        self.manifest = manifest
        self.depth_scale = float(manifest["depth"]["scale"])

    @property
    def shards(self) -> list[dict[str, Any]]:
        return sorted(self.manifest["shards"].values(), key=lambda r: r["first_index"])

    def shard_path(self, record: dict[str, Any]) -> Location:
        return store.join(self.root, SHARD_DIR, record["name"])

    def __len__(self) -> int:
        return sum(r["count"] for r in self.shards)

    @property
    def complete(self) -> bool:
        """All samples the manifest asks for are committed."""
        return self.manifest.get("n") is not None and len(self) >= self.manifest["n"]

    def iter_samples(self, shard_records: list[dict[str, Any]] | None = None, verify: bool = True) -> Iterator[Sample]:
        """Samples of the given committed shards (default: all), each shard checked against its
        sha256 as it is read (verify=False skips that). A thread reads READ_AHEAD shards ahead."""
        records = self.shards if shard_records is None else shard_records
        pool = ThreadPoolExecutor(1, thread_name_prefix="shard-read-ahead")
        ahead = [pool.submit(self._fetch, r) for r in records[:READ_AHEAD]]
        try:
            for i, record in enumerate(records):
                data = ahead.pop(0).result()
                if i + READ_AHEAD < len(records):
                    ahead.append(pool.submit(self._fetch, records[i + READ_AHEAD]))
                count = 0
                path = self.shard_path(record)
                for count, sample in enumerate(iter_shard(path, self.depth_scale, record["sha256"] if verify else None,
                                                          data), 1):
                    yield sample
                if count != record["count"]:
                    raise ShardError(f"{path}: holds {count} samples, the manifest says {record['count']}")
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _fetch(self, record: dict[str, Any]) -> bytes:
        return read_shard(self.shard_path(record))

    def verify(self, record: dict[str, Any]) -> str | None:
        """None when the shard file matches its checksum and holds the samples its record counts, else what
        is wrong."""
        if not store.exists(self.shard_path(record)):
            return "missing"
        if store.sha256(self.shard_path(record)) != record["sha256"]:
            return "checksum mismatch"
        held = shard_sample_count(self.shard_path(record))
        return None if held == record["count"] else f"holds {held} samples, the manifest says {record['count']}"
