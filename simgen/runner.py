"""Running a render job: the dataset's manifest, the shard plan, and the engines that execute it.

The unit of work is a shard (`simgen.worker.render_shard`). This module decides which shards are
missing, hands them to an engine (a local process pool, Ray tasks, or just a shard range for a
job array) and commits each finished shard to the manifest under a file lock. It never deletes a
committed shard; the only files it removes are its own half-written `*.tmp-*` shards.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue
import shutil
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterable

from simgen import dataset, shards, __version__
from simgen.assets import BUILTIN_DIR, load_libraries, same_libraries
from simgen.config import RenderConfig
from simgen.runs import differences, sha256_file
from simgen.worker import ShardTask

# Every shard is rendered by a fresh process. Blender leaks memory across scenes, and, measured
# here, Cycles' noise pattern depends on what the process rendered before (same depth and
# instances, different RGB noise): a fresh process per shard makes a shard a function of
# (config, seed, shard index) whatever engine, worker count or resume order produced it.
# It costs one bpy start-up (~4 s on 2 cores) per shard.
RECYCLE_AFTER_SHARDS = 1
LOG_DIR = "logs"


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


def open_dataset_for_render(out: Path, config: RenderConfig, seed: int, n: int,
                            digests: list[str] | None = None) -> dict[str, Any]:
    """Create the dataset or check that `out` holds this very dataset (same config, seed, assets;
    `digests`: of the config's libraries, when the caller has loaded them)."""
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--out {out} is a file; give a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise DatasetError(f"--out {out} is not writable ({e.strerror}); choose another directory") from None
    if digests is None:
        digests = load_libraries(library_folders(config)).digests

    def check_not_foreign() -> dict[str, Any] | None:
        try:
            manifest = shards.load_manifest(out)
        except shards.ShardError as e:
            raise DatasetError(f"{e}; this directory holds something else: choose another --out") from None
        if manifest is None:
            ours = (".manifest.lock", shards.SHARD_DIR, LOG_DIR)
            foreign = [p.name for p in out.iterdir() if p.name not in ours]
            if (out / shards.SHARD_DIR).is_dir():
                foreign += [p.name for p in (out / shards.SHARD_DIR).iterdir()]
            if foreign:
                raise DatasetError(f"--out {out} is not empty and holds no simgen dataset "
                                   f"({', '.join(sorted(foreign)[:3])}...); choose an empty or new directory")
        return manifest

    check_not_foreign()  # before the lock file is created: a foreign directory is left untouched
    with dataset.manifest_lock(out):
        manifest = check_not_foreign()
        if manifest is None:
            manifest = _new_manifest(config, seed, n, digests)
            shards.save_manifest(out, manifest)
            return manifest
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


def damaged_shards(out: Path, manifest: dict[str, Any], verify: bool = False) -> set[str]:
    """Committed shards whose file is missing or changed (size and time; sha256 with `verify`).
    Intact files whose time changed (a copied dataset) get their new time recorded: hashed once."""
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


def _adopt_or_clean(out: Path, manifest: dict[str, Any], todo: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Before rendering: remove our own half-written files of the planned shards, and adopt a
    complete shard file whose manifest commit was lost (a kill between rename and commit)."""
    remaining = []
    depth_scale = float(manifest["depth"]["scale"])
    for k, start, stop in todo:
        final = out / shards.SHARD_DIR / shards.shard_name(k)
        for tmp in final.parent.glob(final.name + shards.TMP_MARK + "*"):
            if not shards.writer_alive(tmp):  # a concurrent job's file in progress is left alone
                tmp.unlink(missing_ok=True)
        if final.exists() and shards.shard_name(k) not in manifest["shards"]:
            try:
                indices = [s.index for s in shards.iter_shard(final, depth_scale)]
            except shards.ShardError:
                indices = []
            if indices == list(range(start, stop)):
                dataset.commit_shard(out, {"name": final.name, "first_index": start, "count": stop - start,
                                   "sha256": sha256_file(final), "bytes": final.stat().st_size,
                                   "rejected": {}, "forced_views": 0, "adopted": True})
                continue
        remaining.append((k, start, stop))
    return remaining


# -------------------------------------------------------------------------------------- engines

_PROGRESS_QUEUE: Any = None


def _init_local_worker(progress_queue: Any, log_dir: str, scratch: str) -> None:
    """Blender prints a lot: a worker's stdout and stderr go to OUT/logs/worker-PID.log. Its temporary files
    (BlenderProc's and Blender's) go under `scratch`, which the runner removes however the worker ends."""
    global _PROGRESS_QUEUE
    _PROGRESS_QUEUE = progress_queue
    os.environ["TMPDIR"] = scratch
    tempfile.tempdir = None  # read TMPDIR again
    redirect_output(log_dir)


def redirect_output(log_dir: str) -> None:
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(log_dir) / f"worker-{os.getpid()}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _local_task(task: ShardTask) -> dict[str, Any]:
    from simgen.worker import render_shard

    return render_shard(task, on_sample=lambda k: _PROGRESS_QUEUE.put(k))


def _run_local(tasks: list[ShardTask], workers: int, bar, on_done) -> None:
    log_dir = str(Path(tasks[0].out) / LOG_DIR)
    ctx = mp.get_context("spawn")  # bpy must not be forked
    progress: Any = ctx.Queue()
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set():
            try:
                bar.update(progress.get(timeout=0.2))
            except queue.Empty:
                pass

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    # the workers' temporary files live here: a worker killed by Ctrl-C or a failure (pool.terminate) runs
    # no cleanup of its own, so the runner removes the whole folder
    scratch = tempfile.mkdtemp(prefix="simgen-render-")
    pool = ctx.Pool(workers, initializer=_init_local_worker, initargs=(progress, log_dir, scratch),
                    maxtasksperchild=RECYCLE_AFTER_SHARDS)
    try:
        try:
            for record in pool.imap_unordered(_local_task, tasks):
                on_done(record)
        except Exception as e:  # a worker's error arrives here, re-raised by the pool
            raise DatasetError(f"a render worker failed: {type(e).__name__}: {e} (details in {log_dir}); "
                               "committed shards are kept, rerun the command to resume") from None
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
        shutil.rmtree(scratch, ignore_errors=True)
        stop.set()
        thread.join()
        while True:  # what the workers reported after the last poll
            try:
                bar.update(progress.get_nowait())
            except queue.Empty:
                break


# seconds to wait for a Ray cluster's address to answer before saying it cannot be reached (Ray itself keeps
# retrying for minutes)
RAY_CONNECT_TIMEOUT = 10.0


def require_reachable(address: str | None) -> None:
    """A HOST:PORT Ray address must accept a connection within RAY_CONNECT_TIMEOUT ("auto", "ray://..." and
    none are Ray's to resolve)."""
    host, _, port = (address or "").rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT).close()
    except OSError as e:
        raise DatasetError(f"--ray-address {address}: cannot reach a Ray cluster there ({e.strerror or e}); start one "
                           "with `ray start --head`, or leave the flag out to start a local one") from None


def _run_ray(tasks: list[ShardTask], address: str | None, bar, on_done) -> None:
    try:
        import ray
    except ImportError:
        raise DatasetError("--executor ray needs ray: pip install -e '.[ray]'") from None
    from simgen.worker import render_shard

    started_here = not ray.is_initialized()
    if started_here:
        require_reachable(address)
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(max_calls=RECYCLE_AFTER_SHARDS, num_cpus=max(1, tasks[0].threads))(render_shard)
    pending = {remote.remote(t): t for t in tasks}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(done[0])
            record = ray.get(done[0])
            bar.update(task.stop - task.start)
            on_done(record)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()


def render(out: str | Path, config: RenderConfig, seed: int, n: int, workers: int = 1, executor: str = "local",
           shard_range: tuple[int, int] | None = None, ray_address: str | None = None, threads: int | None = None,
           show_progress: bool = True, verify: bool = False) -> dict[str, Any]:
    """Render (or resume, extend, repair) the dataset in `out` to `n` samples. Committed shards
    are checked first (size and time; the sha256 too with `verify`); missing or damaged ones are
    rendered again. Returns a summary."""
    from tqdm import tqdm

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
    out = Path(out)
    library = load_libraries(library_folders(config))
    for family in missing_families(library, config):
        print(f"simgen: warning: the asset libraries have no {family} objects (meshes with family {family!r} and "
              f"thing true): {family} scenes will hold structure only", file=sys.stderr)
    manifest = open_dataset_for_render(out, config, seed, n, library.digests)
    damaged = damaged_shards(out, manifest, verify)
    todo = _adopt_or_clean(out, manifest, plan(manifest, n, shard_range, damaged))
    if threads is None:  # share the cores between the local workers
        threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else 0
    folders = library_folders(config)
    tasks = [ShardTask(str(out), config.to_dict(), folders, seed, k, a, b, threads) for k, a, b in todo]
    total = sum(t.stop - t.start for t in tasks)
    summary = {"out": str(out), "rendered": 0, "shards": len(tasks), "rejected": {},
               "repaired": sorted(damaged & {shards.shard_name(k) for k, _, _ in todo})}

    def on_done(record: dict[str, Any]) -> None:
        dataset.commit_shard(out, record)
        summary["rendered"] += record["count"]
        for reason, count in record.get("rejected", {}).items():
            summary["rejected"][reason] = summary["rejected"].get(reason, 0) + count

    if not tasks:
        return summary
    with tqdm(total=total, unit="img", desc="render", disable=not show_progress, smoothing=0.1) as bar:
        if executor == "local":
            _run_local(tasks, min(workers, len(tasks)), bar, on_done)
        elif executor == "ray":
            _run_ray(tasks, ray_address, bar, on_done)
        else:
            raise DatasetError(f"unknown --executor {executor!r}; choose local or ray")
    return summary


def iter_shard_ranges(n: int, samples_per_shard: int, parts: int) -> Iterable[tuple[int, int]]:
    """Split the shards of an n-sample dataset into `parts` contiguous ranges (for job arrays)."""
    total = math.ceil(n / samples_per_shard)
    step = math.ceil(total / parts)
    for a in range(0, total, step):
        yield a, min(total, a + step)
