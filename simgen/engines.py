"""The engines that run a render job's shard tasks: a local process pool, or Ray tasks on a cluster.

`simgen.runner` plans the shards and commits them; an engine only runs `simgen.worker.render_shard` on each
task and hands every finished record to `on_done`, in the order they finish.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import queue
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

from simgen import store
from simgen.runner import LOG_DIR, DatasetError
from simgen.store import Location
from simgen.worker import ShardTask

# Every shard is rendered by a fresh process. Blender leaks memory across scenes, and, measured
# here, Cycles' noise pattern depends on what the process rendered before (same depth and
# instances, different RGB noise): a fresh process per shard makes a shard a function of
# (config, seed, shard index) whatever engine, worker count or resume order produced it.
# It costs one bpy start-up (~4 s on 2 cores) per shard.
RECYCLE_AFTER_SHARDS = 1

_PROGRESS_QUEUE: Any = None


def _init_local_worker(progress_queue: Any, log_dir: str, scratch: str) -> None:
    """Blender prints a lot: a worker's stdout and stderr go to OUT/logs/worker-PID.log. Its temporary files
    (BlenderProc's and Blender's) go under `scratch`, which the runner removes however the worker ends."""
    global _PROGRESS_QUEUE
    _PROGRESS_QUEUE = progress_queue
    os.environ["TMPDIR"] = scratch
    tempfile.tempdir = None  # read TMPDIR again
    redirect_output(log_dir)


def log_folder(out: Location) -> Path:
    """Where local workers' output goes: OUT/logs for a folder; for a URL, a local folder named after it (logs
    are no part of the data, and a store takes no appends)."""
    if not store.is_url(out):
        return Path(out) / LOG_DIR
    return Path(tempfile.gettempdir()) / f"simgen-logs-{hashlib.sha256(str(out).encode()).hexdigest()[:12]}"


def redirect_output(log_dir: str) -> None:
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(log_dir) / f"worker-{os.getpid()}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _local_task(task: ShardTask) -> dict[str, Any]:
    from simgen.worker import render_shard

    return render_shard(task, on_sample=lambda k: _PROGRESS_QUEUE.put(k))


def run_local(tasks: list[ShardTask], workers: int, bar, on_done) -> None:
    log_dir = str(log_folder(tasks[0].out))
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


def run_ray(tasks: list[ShardTask], address: str | None, bar, on_done) -> None:
    try:
        import ray
    except ImportError:
        raise DatasetError("--executor ray needs ray: pip install -e '.[ray]'") from None
    from simgen.worker import render_shard

    started_here = not ray.is_initialized()
    if started_here:
        require_reachable(address)
        # "local": a new local instance, not the last cluster recorded in /tmp/ray (maybe dead: ray.init() would wait on it)
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False)
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
