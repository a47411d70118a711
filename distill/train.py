"""`distill train`: the loop around the distillation step (distill/distiller.py), the run directory
("finished, resume or refuse"), validation, TensorBoard logging and checkpoints.

OUT holds checkpoint.pt (the latest state, for --resume), student.pt (written once, when the run
finishes), config.json (the TrainConfig: `--config` reads it back) and tb/ (TensorBoard).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from distill.checkpoint import read_checkpoint
from distill.config import INIT_STUDENT, RUN_KEYS, STUDENT_BN, TrainConfig, config_differences
from distill.data import DataError, ImageStream, Interleaved, RGBDFolder, ShardStream, readable_images
from distill.distiller import Distiller, check_same_teacher
from distill.networks import count_macs, count_params
from distill.runtime import describe_precision
from distill.teacher import STUDENT_OUTPUTS, TeacherSpec, teacher_digest
from simgen.options import ConfigError
from simgen.runs import FINISHED, require_writable, run_decision
from simgen.dataset import DatasetReader

__all__ = ["CHECKPOINT", "FINAL", "INIT_STUDENT", "STUDENT_BN", "Distiller", "TrainConfig", "make_loader", "train"]

CHECKPOINT = "checkpoint.pt"   # the latest state, for --resume
FINAL = "student.pt"           # written once, when the run finishes
RUN_FILES = {CHECKPOINT, FINAL, "config.json", "tb"}  # what a run directory may hold
SHARDS_SHOWN = 8  # shard names a DDP rank lists when it starts


def check_run_directory(cfg: TrainConfig) -> dict[str, Any] | None:
    """Refuse an --out that would lose work; returns the summary of an identical finished run
    (nothing to do), else None. Never deletes or overwrites a finished student."""
    out = Path(cfg.out)
    if not str(cfg.out).strip() or out.resolve() == Path.cwd():
        raise ConfigError("--out must name a run directory (not the current directory)")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file; give a directory")
    finished_diff = None
    if (out / FINAL).exists():
        ckpt = read_checkpoint(out / FINAL)
        finished_diff = config_differences(ckpt["config"], cfg, ignore=RUN_KEYS, where=str(out / FINAL))
        if "teacher" not in finished_diff:  # the same teacher path: are its files still the same?
            check_same_teacher(ckpt, teacher_digest(TeacherSpec(**cfg.teacher)), cfg, out / FINAL)
        if cfg.resume and finished_diff == ["steps"] and cfg.steps > ckpt["step"]:
            # extending a finished run: its student is kept beside the longer run's
            (out / FINAL).rename(out / f"student-step{ckpt['step']}.pt")
            return None
        finished_diff = [k + (" (or --resume with more --steps to extend it)" if k == "steps" else "")
                         for k in finished_diff]
    if run_decision(str(out), "run", finished_diff, (out / CHECKPOINT).exists(), cfg.resume) == FINISHED:
        return {"steps": ckpt["step"], "out": str(out), "already_finished": True}
    foreign = sorted(p.name for p in out.iterdir()
                     if p.name not in RUN_FILES and not p.name.startswith("student-step")) if out.is_dir() else []
    if foreign:
        raise FileExistsError(f"--out {out} holds other files ({', '.join(foreign[:3])}); a run needs an empty or new "
                              "directory (nothing was touched)")
    return None


def make_loader(cfg: TrainConfig, hw: tuple[int, int], image_paths: list[Path] = ()) -> DataLoader:
    """Batches of shard samples, of --images, or of both in the --images-share (same order for a seed)."""
    n_images = cfg.image_count()
    stream = None
    if cfg.shards:
        stream = ShardStream(cfg.shards, hw, seed=cfg.seed, skip_corrupt=cfg.skip_corrupt)
    if image_paths:
        images = ImageStream(image_paths, hw, seed=cfg.seed)
        stream = images if stream is None else Interleaved(stream, images, (cfg.batch_size - n_images, n_images))
    return DataLoader(stream, batch_size=cfg.batch_size, num_workers=cfg.workers, drop_last=True,
                      persistent_workers=cfg.workers > 0, pin_memory=torch.cuda.is_available())


def train(cfg: TrainConfig, show_progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a distillation; returns a summary. Writes OUT/checkpoint.pt, OUT/student.pt
    (final), OUT/config.json and TensorBoard logs in OUT/tb."""
    out = Path(cfg.out)
    finished = _on_rank_0(check_run_directory, cfg)
    if finished is not None:
        return finished
    if not cfg.shards and not cfg.images:
        raise ConfigError("nothing to train on: give --shards DIR (simgen datasets) and/or --images DIR")
    for root in cfg.shards:  # a bad --shards, --images or --val is reported before any model is built
        DatasetReader(root)
    if cfg.val:
        from distill.evaluate import EvalConfig

        try:
            RGBDFolder(cfg.val, split=EvalConfig.split)
        except DataError as e:
            raise DataError(f"--val {e}") from None
    image_paths = [p for source in cfg.images for p in readable_images(source)]
    created = not out.exists()
    require_writable(out, "--out", directory=True)
    try:
        return _run(cfg, out, show_progress, image_paths)
    except BaseException:
        if created and not (out / CHECKPOINT).exists():
            shutil.rmtree(out, ignore_errors=True)  # failed before its first checkpoint: leave nothing behind
        raise


def _run(cfg: TrainConfig, out: Path, show_progress: bool, image_paths: list[Path]) -> dict[str, Any]:
    from tqdm import tqdm

    ckpt_path = out / CHECKPOINT
    d = Distiller(cfg)
    if d.rank == 0:
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
        _print_start(d, image_paths)
    writer = _tensorboard(out / "tb") if d.rank == 0 else None
    # the loader's seed is drawn from the global RNG here, in a new run and a resumed one alike; the RNG state
    # saved with the checkpoint is restored after it, so every draw keeps its order
    loader = make_loader(cfg, d.hw, image_paths)
    if d.world > 1 and cfg.shards:
        _print_rank_shards(d, loader)
    batches = iter(loader)
    if cfg.resume:
        d.load(ckpt_path)
    # exact resume: the stream is a function of the seed, so skip the batches already used
    for _ in range(d.step):
        next(batches)
    clock = _Clock()
    logs: dict[str, float] = {}
    with tqdm(total=cfg.steps, initial=d.step, unit="step", disable=not show_progress or d.rank != 0) as bar:
        while d.step < cfg.steps:
            batch = clock.wait(lambda: next(batches))
            logs = clock.compute(lambda: d.train_step(batch))
            bar.update(1)
            if d.step % cfg.log_every == 0 or d.step == cfg.steps:
                _log(d, logs, bar, writer, clock)
            if cfg.val and d.rank == 0 and (d.step % cfg.val_every == 0 or d.step == cfg.steps):
                _validate(d, writer)
            if d.step % cfg.ckpt_every == 0 or d.step == cfg.steps:
                d.save(ckpt_path)
    d.save(out / FINAL)  # every rank: the ranks' random states are gathered
    if writer:
        writer.close()
    return {"steps": d.step, "last": logs, "data_wait_share": clock.wait_share(), "out": str(out),
            "images_per_s": cfg.batch_size * d.world * clock.steady_steps / max(1e-9, clock.busy()),
            "startup_s": clock.startup}


def _on_rank_0(fn, *args: Any) -> Any:
    """fn's result as rank 0 finds it, sent to every rank: under torchrun only rank 0's --out holds the run (the
    others may be on machines that do not see it)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return fn(*args)
    box = [fn(*args) if torch.distributed.get_rank() == 0 else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


class _Clock:
    """Time spent waiting for data and computing, from the second step on (the first waits for worker
    start and the shuffle buffer: `startup`), and the time since the last log line."""

    def __init__(self) -> None:
        self.waited = self.computed = self.startup = 0.0
        self.steady_steps = 0
        self.begin = self.since_log = time.perf_counter()
        self._t = 0.0

    def wait(self, fn):
        t0 = time.perf_counter()
        value = fn()
        self._t = time.perf_counter() - t0
        return value

    def compute(self, fn):
        t0 = time.perf_counter()
        value = fn()
        if self.startup == 0.0:
            self.startup = time.perf_counter() - self.begin
        else:
            self.waited, self.computed = self.waited + self._t, self.computed + time.perf_counter() - t0
            self.steady_steps += 1
        return value

    def busy(self) -> float:
        return self.waited + self.computed

    def wait_share(self) -> float:
        return self.waited / max(1e-9, self.busy())

    def lap(self) -> float:
        """Seconds since the last lap (the last log line)."""
        now = time.perf_counter()
        seconds, self.since_log = now - self.since_log, now
        return seconds


def _print_start(d: Distiller, image_paths: list[Path]) -> None:
    cfg = d.cfg
    origin = ", started from the teacher's weights" if cfg.init_student == "teacher" else ""
    print(f"student {cfg.student}{origin}: {count_params(d.student) / 1e6:.2f} M parameters, "
          f"{count_macs(d.student, d.hw) / 1e9:.2f} GMACs at {d.spec.input_size}; "
          f"teacher: {sum(p.numel() for p in d.teacher.parameters()) / 1e6:.2f} M parameters, "
          f"{len(d.bn_hooks)} BN layers hooked; device {d.device}, "
          f"{'channels_last' if cfg.channels_last else 'contiguous'} layout, "
          f"{describe_precision(cfg.precision, d.precision, d.device)}")
    print(f"method: {d.describe_method()}")
    if image_paths:
        n = cfg.image_count()
        print(f"data: {n} of {cfg.batch_size} images per batch from --images ({len(image_paths)} files)"
              + (f", {cfg.batch_size - n} from --shards" if cfg.shards else ""))


def _print_rank_shards(d: Distiller, loader: DataLoader) -> None:
    """Every rank says which shards it reads (each rank reads its own, SHARDS_SHOWN of them by name)."""
    stream = loader.dataset.first if isinstance(loader.dataset, Interleaved) else loader.dataset
    mine = stream.rank_shards(0, d.rank, d.world, d.cfg.workers)
    names = ", ".join(mine[:SHARDS_SHOWN]) + (", ..." if len(mine) > SHARDS_SHOWN else "")
    print(f"data: rank {d.rank} of {d.world} reads {len(mine)} of {len(stream.shards)} shards in epoch 0: {names}",
          flush=True)


def _log(d: Distiller, logs: dict[str, float], bar, writer, clock: _Clock) -> None:
    cfg = d.cfg
    ips = cfg.batch_size * d.world * cfg.log_every / max(1e-9, clock.lap())
    bar.set_postfix(kd=f"{logs['kd_total']:.3f}", bn=f"{logs.get('bn', 0):.2f}", img_s=f"{ips:.1f}")
    if writer:
        for k, v in logs.items():
            writer.add_scalar(f"train/{k}", v, d.step)
        writer.add_scalar("train/images_per_s", ips, d.step)
        writer.add_scalar("train/data_wait_share", clock.wait_share(), d.step)
        _log_images(writer, d.last_images, d.step)


def _validate(d: Distiller, writer) -> None:
    from distill.evaluate import evaluate_model

    metrics = evaluate_model(d.student, d.cfg.val, d.spec.input_size, d.device, precision=d.precision,
                             output=STUDENT_OUTPUTS[d.spec.output])["overall"]
    if writer:
        for k, v in metrics.items():
            writer.add_scalar(f"val/{k}", v, d.step)


def _tensorboard(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None  # tensorboard is optional: pip install tensorboard
    return SummaryWriter(str(path))


def _log_images(writer, last: dict[str, torch.Tensor], step: int) -> None:
    def norm(d: torch.Tensor) -> torch.Tensor:
        inv = 1.0 / d.clamp_min(1e-6)
        lo, hi = inv.amin(dim=(1, 2, 3), keepdim=True), inv.amax(dim=(1, 2, 3), keepdim=True)
        return ((inv - lo) / (hi - lo).clamp_min(1e-6)).expand(-1, 3, -1, -1)

    grid = torch.cat([last["input"], last["transformed"], norm(last["teacher"]), norm(last["student"])], 2)
    writer.add_images("train/input|transformed|teacher|student", grid.clamp(0, 1), step)
