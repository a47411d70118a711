"""Supervised training of one of the project's architectures on RGB-D data: reference teachers
for tests, demos and experiments. Users who have a teacher never need it."""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from distill.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from distill.data import EPOCH_SEED_STRIDE, RGBDFolder, augment, resize_crop
from distill.distiller import require_finite
from distill.networks import ARCHITECTURES, build_depth_model, count_params
from distill.runtime import (PRECISIONS, autocast, describe_precision, memory_format, pick_device, resolve_precision,
                             lr_lambda, to_memory_format)
from simgen.options import ConfigError, Size, as_size, check_fields, option, parse_size
from simgen.runs import NEW, config_differences, require_writable, run_decision


# learning-rate warm-up: a tenth of the run, at most MAX_WARMUP_STEPS (short runs warm up briefly)
MAX_WARMUP_STEPS = 200
# the scale-invariant log loss is multiplied by this so its values read like percentages
# (BTS, AdaBins do the same)
SILOG_SCALE = 10.0
SILOG_VARIANCE_FOCUS = 0.85  # lambda of Eigen et al.: 1 = fully scale-invariant, 0 = plain log RMSE
# the state of an unfinished fit (OUT.partial) is written every this many steps, for --resume
PARTIAL_EVERY = 250


@dataclass
class FitConfig:
    """Options of `distill fit-teacher` (flags generated from these fields)."""

    data: str = option("", "RGB-D folder, index.csv folder or dataset")
    out: str = option("", "checkpoint file to write (must not exist)")
    arch: str = option("resnet34", "architecture", choices=ARCHITECTURES)
    input_size: Size = option(Size(320, 224), "WIDTHxHEIGHT of the training crops", parse=parse_size)
    depth_scale: float = option(1000.0, "depth PNG units per metre", positive=True)
    split: str | None = option("train", "index.csv split ('all' for every row)", parse=str)
    min_depth: float = option(0.1, "smallest depth the model outputs (m)", positive=True)
    max_depth: float = option(10.0, "largest depth the model outputs (m)", positive=True)
    steps: int = option(2000, "training steps", low=1)
    batch_size: int = option(8, "images per step", low=1)
    lr: float = option(1e-3, "learning rate (AdamW, cosine after warm-up)", positive=True)
    seed: int = option(0, "seed of initialisation, order and augmentation")
    workers: int = option(2, "DataLoader worker processes", low=0)
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    precision: str = option("auto", "auto | fp32 | bf16 (see distill train --help)", choices=PRECISIONS)
    channels_last: bool = option(True, "NHWC memory layout")
    resume: bool = option(False, "continue the unfinished fit in OUT.partial")

    def __post_init__(self) -> None:
        self.input_size = as_size(self.input_size)
        check_fields(self)
        if self.split == "all":
            self.split = None
        if min(self.input_size) < 32:
            raise ConfigError(f"--input-size {self.input_size}: width and height must be at least 32")


class _EpochOrder(Sampler[int]):
    """The frame order of a fit as one endless stream of positions k: frame k % n in epoch k // n,
    each epoch a fresh permutation drawn from (seed, epoch). A pure function of the seed (not of
    the worker count), and it can start anywhere: resuming at step s starts at s * batch size
    without reading the frames before it."""

    def __init__(self, n: int, seed: int, start: int = 0):
        self.n, self.seed, self.start = n, seed, start

    def __iter__(self):
        epoch, offset = divmod(self.start, self.n)
        while True:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * EPOCH_SEED_STRIDE + epoch))
            for frame in order[offset:].tolist():
                yield epoch * self.n + frame
            epoch, offset = epoch + 1, 0


class _Augmented(Dataset):
    """Frame k % n, cropped and jittered with a generator keyed by (seed, k): a new draw for
    every frame in every epoch."""

    def __init__(self, base: RGBDFolder, hw: tuple[int, int], seed: int):
        self.base, self.hw, self.seed = base, hw, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        item = self.base[k % len(self.base)]
        rng = random.Random(f"{self.seed}-{k}")
        t = {"rgb": item["rgb"], "depth": item["depth"], "inst": torch.zeros_like(item["depth"], dtype=torch.int64)}
        t = augment(resize_crop(t, self.hw, rng), rng)
        return {"rgb": t["rgb"], "depth": t["depth"]}


def supervised_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Scale-invariant log loss (Eigen et al., lambda 0.85) on valid ground-truth pixels."""
    mask = gt > 0
    d = torch.log(pred[mask].clamp_min(1e-3)) - torch.log(gt[mask])
    return torch.sqrt((d ** 2).mean() - SILOG_VARIANCE_FOCUS * d.mean() ** 2 + 1e-8) * SILOG_SCALE


# how a fit was executed, not what it computes
RUN_KEYS = {"workers", "device", "precision", "channels_last", "out", "resume"}


def partial_path(out: str | Path) -> Path:
    """Where an unfinished fit keeps its state (model, optimiser, step) until OUT is written."""
    return Path(f"{out}.partial")


def _existing_fit(cfg: FitConfig) -> dict[str, Any]:
    """`out` exists: the same fit done before is reused (nothing to do); anything else is refused."""
    try:
        saved = read_checkpoint(cfg.out).get("fit_config")
    except CheckpointError:
        saved = None
    if saved is None:
        raise FileExistsError(f"{cfg.out} exists; choose a new output file (nothing was overwritten)")
    run_decision(str(cfg.out), "teacher fit", config_differences(saved, cfg, RUN_KEYS), False, False)
    return {"steps": cfg.steps, "loss": float("nan"), "out": str(cfg.out), "already_finished": True}


def _resume_step(cfg: FitConfig, model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any) -> tuple[int, float]:
    """(the step to start at, seconds of fitting so far): 0, or where OUT.partial stopped (its state
    loaded) under --resume. An unfinished fit is never overwritten without --resume, nor continued
    with another config."""
    partial = partial_path(cfg.out)
    if run_decision(str(partial), "fit", None, partial.exists(), cfg.resume) == NEW:
        return 0, 0.0
    state = read_checkpoint(partial)
    diff = config_differences(state["fit_config"], cfg, RUN_KEYS)
    if diff:
        raise ConfigError(f"--resume: {partial} was fitted with another config (differs in: {', '.join(diff)}); "
                          "use the same options or another --out")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    return int(state["step"]), float(state.get("fit_seconds", 0.0))


def fit_teacher(cfg: FitConfig, show_progress: bool = True) -> dict[str, Any]:
    """Fit (or, with cfg.resume, continue fitting) cfg.arch on cfg.data; writes cfg.out once done."""
    from tqdm import tqdm

    out = Path(cfg.out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory; give the checkpoint file to write (e.g. {out / 'teacher.ckpt'})")
    if out.exists():
        return _existing_fit(cfg)
    require_writable(out, "--out")
    device = pick_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)
    model = to_memory_format(build_depth_model(cfg.arch, cfg.min_depth, cfg.max_depth).to(device), cfg.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(min(MAX_WARMUP_STEPS, cfg.steps // 10 + 1), cfg.steps))
    step, seconds_before = _resume_step(cfg, model, opt, sched)
    data = _Augmented(RGBDFolder(cfg.data, cfg.depth_scale, cfg.split), cfg.input_size.hw, cfg.seed)
    loader = DataLoader(data, batch_size=cfg.batch_size, drop_last=True, num_workers=cfg.workers,
                        sampler=_EpochOrder(len(data), cfg.seed, start=step * cfg.batch_size))
    print(f"fit-teacher {cfg.arch}: {count_params(model) / 1e6:.2f} M parameters, {len(data)} frames, {device}, "
          f"{describe_precision(cfg.precision, precision, device)}" + (f"; continuing at step {step}" if step else ""))
    loss = torch.zeros(())
    batches = iter(loader)
    t0 = time.time()

    def fit_seconds() -> float:  # over every sitting of this fit, kept in OUT.partial and OUT
        return round(seconds_before + time.time() - t0, 1)

    with tqdm(total=cfg.steps, initial=step, unit="step", disable=not show_progress) as bar:
        while step < cfg.steps:
            batch = next(batches)
            with autocast(device, precision):
                pred = model(batch["rgb"].to(device).contiguous(memory_format=memory_format(cfg.channels_last)))
            loss = supervised_loss(pred.float(), batch["depth"].to(device))
            require_finite(loss, step + 1, "the supervised loss", "the ground truth (no valid depth? --depth-scale?)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if step % PARTIAL_EVERY == 0 and step < cfg.steps:
                save_checkpoint(partial_path(out), model, cfg.arch, cfg.input_size, cfg.min_depth, cfg.max_depth,
                                fit_config=asdict(cfg), step=step, opt=opt.state_dict(), sched=sched.state_dict(),
                                fit_seconds=fit_seconds())
    save_checkpoint(out, model, cfg.arch, cfg.input_size, cfg.min_depth, cfg.max_depth, fit_config=asdict(cfg),
                    fit_seconds=fit_seconds())
    partial_path(out).unlink(missing_ok=True)  # our own state file, superseded by OUT
    return {"steps": step, "loss": loss.item(), "out": str(out)}
