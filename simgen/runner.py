"""Running a render job: the dataset's manifest and the shard plan.

The unit of work is a shard (`simgen.worker.render_shard`). This module decides which shards are
missing, hands them to an engine (simgen/engines.py: a local process pool or Ray tasks; or just a
shard range for a job array) and commits each finished shard (simgen.dataset.commit_shard: under a
file lock in a folder, lock-free at a URL). It never deletes a committed shard; the only files it
removes are its own half-written `*.tmp-*` shards.
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
import sys
from pathlib import Path
from typing import Any, Iterable

from simgen import dataset, shards, store, __version__
from simgen.assets import BUILTIN_DIR, load_libraries, same_libraries
from simgen.config import RenderConfig
from simgen.runs import differences
from simgen.store import Location
from simgen.worker import ShardTask

LOG_DIR = "logs"  # local workers' output (simgen.engines.log_folder)


class DatasetError(Exception):
    """The out directory cannot take this job; the message says why and what to do."""


def library_folders(config: RenderConfig) -> list[str]:
    folders = [str(BUILTIN_DIR)] if config.builtin_assets else []
    return folders + [str(Path(a).resolve()) for a in config.assets]


# ------------------------------------------------------------------------------------- manifest


def _new_manifest(config: RenderConfig, seed: int, n: int, digests: list[str]) -> dict[str, Any]:
    return shards.new_manifest(depth_scale=config.resolved_depth_scale(), max_depth_m=config.resolved_max_depth(),
                               samples_per_shard=config.samples_per_shard, n=n, config=config.to_dict(), seed=seed,
                               generator=f"simgen {__version__}", assets=digests)


def open_dataset_for_render(out: Location, config: RenderConfig, seed: int, n: int,
                            digests: list[str] | None = None) -> dict[str, Any]:
    """Create the dataset or check that `out` (a folder or a URL) holds this very dataset (same config, seed,
    assets; `digests`: of the config's libraries, when the caller has loaded them)."""
    _require_writable(out)
    if digests is None:
        digests = load_libraries(library_folders(config)).digests
    if store.is_url(out):  # lock-free: the manifest is created at most once (a conditional create)
        manifest = _existing_dataset(out)
        if manifest is None:
            manifest = _new_manifest(config, seed, n, digests)
            if shards.save_manifest(out, manifest, create=True):
                return manifest
            manifest = _existing_dataset(out)  # another driver created it first: it must be this dataset
        return _same_dataset(out, manifest, config, seed, n, digests)
    _existing_dataset(out)  # before the lock file is created: a foreign directory is left untouched
    with dataset.manifest_lock(out):
        manifest = _existing_dataset(out)
        if manifest is None:
            manifest = _new_manifest(config, seed, n, digests)
            shards.save_manifest(out, manifest)
            return manifest
        return _same_dataset(out, manifest, config, seed, n, digests)


def _require_writable(out: Location) -> None:
    if store.is_url(out):
        store.open_store(out)
        store.probe_writable(out)
        return
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--out {out} is a file; give a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise DatasetError(f"--out {out} is not writable ({e.strerror}); choose another directory") from None


def _existing_dataset(out: Location) -> dict[str, Any] | None:
    """The dataset at `out`, or None where there is nothing; anything else there is refused."""
    try:
        manifest = shards.load_manifest(out)
    except shards.ShardError as e:
        raise DatasetError(f"{e}; this directory holds something else: choose another --out") from None
    if manifest is None:
        names = store.listing(out)
        if shards.MANIFEST in names:  # another driver created it since it was read: the caller's create fails
            return None               # and it is read and checked then
        ours = (".manifest.lock", shards.SHARD_DIR, shards.COMMIT_DIR, LOG_DIR)
        foreign = [name for name in names if name not in ours and not name.startswith(".write-test-")]
        foreign += list(store.listing(store.join(out, shards.SHARD_DIR)))
        if foreign:
            raise DatasetError(f"--out {out} is not empty and holds no simgen dataset "
                               f"({', '.join(sorted(foreign)[:3])}...); choose an empty or new directory")
    return manifest


def _same_dataset(out: Location, manifest: dict[str, Any], config: RenderConfig, seed: int, n: int,
                  digests: list[str]) -> dict[str, Any]:
    """The existing dataset's manifest, its n raised to `n`, when it is this dataset; else refused."""
    diff = differences(manifest["config"], config.to_dict())
    if diff or manifest["seed"] != seed or not same_libraries(manifest["assets"], digests):
        what = ", ".join(diff) if diff else ("--seed" if manifest["seed"] != seed else
                                             "asset libraries: a library.json or a file it references changed")
        raise DatasetError(
            f"--out {out} holds a dataset with another config (differs in: {what}; its seed is "
            f"{manifest['seed']}). Nothing was changed. Use a new --out, or the same options to resume or extend it.")
    if n > manifest["n"]:
        manifest["n"] = n
        shards.save_manifest(out, manifest)
    return manifest


def missing_families(library: Any, config: RenderConfig) -> list[str]:
    """Scene families the config renders that no movable object (thing) of the libraries belongs to."""
    families = {"indoor": ["indoor"], "outdoor": ["outdoor"], "mixed": ["indoor", "outdoor"]}[config.scene]
    if config.scene == "mixed":
        families = [f for f, share in (("indoor", config.indoor_ratio), ("outdoor", 1 - config.indoor_ratio)) if share > 0]
    return [f for f in families if not any(f in m["family"] and m.get("thing", True) for m in library.meshes)]


def plan(manifest: dict[str, Any], n: int, shard_range: tuple[int, int] | None = None,
         damaged: set[str] = frozenset()) -> list[tuple[int, int, int]]:
    """(shard index, first sample, end) of every shard still to render for n samples: missing,
    shorter than planned, or among the `damaged` committed ones."""
    todo = []
    for k, start, stop in shards.shard_spans(n, manifest["samples_per_shard"]):
        if shard_range and not shard_range[0] <= k < shard_range[1]:
            continue
        name = shards.shard_name(k)
        record = manifest["shards"].get(name)
        # A shorter committed shard is the last one of a smaller earlier --n: it grows to full size.
        if record is None or record["count"] < stop - start or name in damaged:
            todo.append((k, start, stop))
    return todo


def damaged_shards(out: Location, manifest: dict[str, Any], verify: bool = False) -> set[str]:
    """Committed shards whose file is missing or changed (size and time; sha256 with `verify`).
    Intact files whose time changed (a copied dataset) get their new time recorded: hashed once.
    At a URL: missing or of another size (one listing), the sha256 too with `verify`."""
    if store.is_url(out):
        sizes = store.listing(store.join(out, shards.SHARD_DIR))
        return {name for name, r in manifest["shards"].items() if sizes.get(name) != r["bytes"] or (
            verify and store.sha256(store.join(out, shards.SHARD_DIR, name)) != r["sha256"])}
    damaged, retimed = set(), {}
    for name, record in manifest["shards"].items():
        if not dataset.shard_intact(out, record, verify):
            damaged.add(name)
            continue
        mtime = (out / shards.SHARD_DIR / name).stat().st_mtime_ns
        if record.get("mtime_ns") != mtime:
            retimed[name] = mtime
    if retimed:
        with dataset.manifest_lock(out):
            current = shards.load_manifest(out)
            for name, mtime in retimed.items():
                if name in current["shards"]:
                    current["shards"][name]["mtime_ns"] = mtime
            shards.save_manifest(out, current)
    return damaged


def _adopt_or_clean(out: Location, manifest: dict[str, Any], todo: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Before rendering: remove our own half-written files of the planned shards, and adopt a
    complete shard file whose commit was lost (a kill between rename or upload and commit)."""
    remaining = []
    present = store.listing(store.join(out, shards.SHARD_DIR))
    for k, start, stop in todo:
        name = shards.shard_name(k)
        if not store.is_url(out):
            for tmp in (out / shards.SHARD_DIR).glob(name + shards.TMP_MARK + "*"):
                if not shards.writer_alive(tmp):  # a concurrent job's file in progress is left alone
                    tmp.unlink(missing_ok=True)
        if name in present and name not in manifest["shards"] and _adopt(out, manifest, name, start, stop):
            continue
        remaining.append((k, start, stop))
    return remaining


def _adopt(out: Location, manifest: dict[str, Any], name: str, start: int, stop: int) -> bool:
    """Commit a shard file that holds exactly samples [start, stop); False when it does not."""
    path = store.join(out, shards.SHARD_DIR, name)
    try:
        data = shards.read_shard(path)
        indices = [s.index for s in shards.iter_shard(path, float(manifest["depth"]["scale"]), data=data)]
    except shards.ShardError:
        return False
    if indices != list(range(start, stop)):
        return False
    dataset.commit_shard(out, {"name": name, "first_index": start, "count": stop - start,
                               "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                               "rejected": {}, "forced_views": 0, "adopted": True})
    return True


def render(out: str | Path, config: RenderConfig, seed: int, n: int, workers: int = 1, executor: str = "local",
           shard_range: tuple[int, int] | None = None, ray_address: str | None = None, threads: int | None = None,
           show_progress: bool = True, verify: bool = False) -> dict[str, Any]:
    """Render (or resume, extend, repair) the dataset in `out` to `n` samples. Committed shards
    are checked first (size and time; the sha256 too with `verify`); missing or damaged ones are
    rendered again. Returns a summary."""
    from tqdm import tqdm

    from simgen import engines
    from simgen.bootstrap import check_render_environment

    if n < 1:
        raise DatasetError(f"--n must be a positive number of samples, got {n}")
    if workers < 1:
        raise DatasetError(f"--workers must be at least 1, got {workers}")
    config.validate()
    total_shards = math.ceil(n / config.samples_per_shard)
    if shard_range and shard_range[0] >= total_shards:
        raise DatasetError(f"--shard-range {shard_range[0]}:{shard_range[1]} is past the end: {n} samples make "
                           f"{total_shards} shards (0:{total_shards})")
    check_render_environment()
    out = store.location(str(out))
    library = load_libraries(library_folders(config))
    for family in missing_families(library, config):
        print(f"simgen: warning: the asset libraries have no {family} objects (meshes with family {family!r} and "
              f"thing true): {family} scenes will hold structure only", file=sys.stderr)
    manifest = open_dataset_for_render(out, config, seed, n, library.digests)
    damaged = damaged_shards(out, manifest, verify)
    todo = _adopt_or_clean(out, manifest, plan(manifest, n, shard_range, damaged))
    if threads is None:  # share the cores between the local workers
        threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else 0
    tasks = _tasks(out, config, seed, todo, threads, damaged)
    total = sum(t.stop - t.start for t in tasks)
    summary = {"out": str(out), "rendered": 0, "shards": len(tasks), "rejected": {},
               "repaired": sorted(damaged & {shards.shard_name(k) for k, _, _ in todo})}

    def on_done(record: dict[str, Any]) -> None:
        if not store.is_url(out):  # at a URL the worker has committed it (dataset.publish_shard)
            dataset.commit_shard(out, record)
        if record.get("already"):  # committed by another driver meanwhile
            summary["by_others"] = summary.get("by_others", 0) + record["count"]
            return
        summary["rendered"] += record["count"]
        for reason, count in record.get("rejected", {}).items():
            summary["rejected"][reason] = summary["rejected"].get(reason, 0) + count

    if tasks:
        with tqdm(total=total, unit="img", desc="render", disable=not show_progress, smoothing=0.1) as bar:
            if executor == "local":
                engines.run_local(tasks, min(workers, len(tasks)), bar, on_done)
            elif executor == "ray":
                engines.run_ray(tasks, ray_address, bar, on_done)
            else:
                raise DatasetError(f"unknown --executor {executor!r}; choose local or ray")
    if store.is_url(out):
        dataset.consolidate(out)
    return summary


def _tasks(out: Location, config: RenderConfig, seed: int, todo: list[tuple[int, int, int]], threads: int,
           damaged: set[str]) -> list[ShardTask]:
    folders = library_folders(config)
    tasks = [ShardTask(str(out), config.to_dict(), folders, seed, k, a, b, threads, shards.shard_name(k) in damaged)
             for k, a, b in todo]
    if store.is_url(out) and tasks:  # drivers sharing a prefix start at different shards, and skip each other's
        start = secrets.randbelow(len(tasks))
        tasks = tasks[start:] + tasks[:start]
    return tasks


def iter_shard_ranges(n: int, samples_per_shard: int, parts: int) -> Iterable[tuple[int, int]]:
    """Split the shards of an n-sample dataset into `parts` contiguous ranges (for job arrays)."""
    total = math.ceil(n / samples_per_shard)
    step = math.ceil(total / parts)
    for a in range(0, total, step):
        yield a, min(total, a + step)
