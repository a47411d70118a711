"""Data-free distillation: train the transformation network T and the student S, top to bottom.

Per step: a batch of simulated images -> object-wise mixing -> T adapts the images toward the
teacher's BatchNorm statistics (T steps) -> S learns the teacher's depth on T's images (one S
step). Every part is one flag, so the paper's ablations are a loop over flags.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from distill.data import ShardStream
from distill.layers import BNStatsHook, depth_kd_loss, ssi_kd_loss
from distill.mixing import MixConfig, mix_objects
from distill.networks import build_depth_model, count_macs, count_params
from distill.networks.transform import TransformNet
from distill.runtime import (autocast, contiguous_state, describe_precision, memory_format, pick_device,
                             resolve_precision, to_memory_format)
from distill.teacher import TeacherSpec, load_teacher, require_batchnorm

CHECKPOINT = "checkpoint.pt"
# what may differ between a run and its --resume (everything else must match)
RESUMABLE_KEYS = {"steps", "resume", "log_every", "ckpt_every", "workers", "device", "val", "val_every",
                  "precision", "channels_last"}


@dataclass
class TrainConfig:
    shards: list[str] = field(default_factory=list)
    out: str = "runs/distill"
    teacher: dict[str, Any] = field(default_factory=dict)   # TeacherSpec fields
    student: str = "mobilenetv2"
    student_imagenet: str | None = None
    min_depth: float = 0.1
    max_depth: float = 10.0
    steps: int = 2000
    batch_size: int = 8
    lr: float = 1e-3                # student
    lr_transform: float = 1e-4
    weight_decay: float = 1e-4
    warmup: int = 100
    clip: float = 1.0
    mixing: bool = True
    mix: dict[str, Any] = field(default_factory=lambda: asdict(MixConfig()))
    transform: bool = True
    transform_steps: int = 1        # T updates per S update
    w_bn: float = 1.0
    bn_loss: str = "sum"            # "sum" of per-layer norms, or "normalized" per layer (see BNStatsHook.loss)
    w_content: float = 10.0
    w_adv: float = 0.0              # teacher-student disagreement (DFAD-style) for T; 0 = off
    w_grad: float = 1.0
    w_normal: float = 1.0
    # False: S learns on T's images and teacher depth of T's own step (one T and teacher pass less
    # per step). True: both are computed again after T's update, as in the paper's step.
    refresh_kd_target: bool = False
    seed: int = 0
    workers: int = 2
    device: str = "auto"
    precision: str = "auto"         # auto | fp32 | bf16 (distill/runtime.py)
    channels_last: bool = True      # NHWC memory layout for every network and input
    log_every: int = 20
    ckpt_every: int = 500
    val: str | None = None
    val_every: int = 500
    resume: bool = False


def lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return f


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Distiller:
    """Holds the models, optimisers and the step function; `train()` runs the loop."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.memory_format = memory_format(cfg.channels_last)
        self.rank, self.world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            self.rank, self.world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        torch.manual_seed(cfg.seed)
        self.spec = TeacherSpec(**cfg.teacher)
        self.teacher = to_memory_format(load_teacher(self.spec, self.device), cfg.channels_last)
        self.size = tuple(self.spec.input_size)
        if cfg.bn_loss not in ("sum", "normalized"):
            raise ValueError(f"bn_loss {cfg.bn_loss!r}: choose 'sum' or 'normalized'")
        if min(self.size) < 32:
            raise ValueError(f"input size {self.size[0]}x{self.size[1]}: the student needs at least 32x32")
        self.student = to_memory_format(build_depth_model(cfg.student, cfg.min_depth, cfg.max_depth,
                                                          cfg.student_imagenet).to(self.device), cfg.channels_last)
        self.transform = to_memory_format(TransformNet().to(self.device), cfg.channels_last) if cfg.transform else None
        self.bn_hooks: list[BNStatsHook] = []
        if cfg.transform and cfg.w_bn > 0:
            self.bn_hooks = [BNStatsHook(m, all_reduce=self.world > 1) for m in require_batchnorm(self.teacher)]
        self.ddp_student = self.student
        if self.world > 1:
            self.ddp_student = torch.nn.parallel.DistributedDataParallel(self.student)
            if self.transform is not None:
                self.transform = torch.nn.parallel.DistributedDataParallel(self.transform)
        self.opt_s = torch.optim.AdamW(self.student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched_s = torch.optim.lr_scheduler.LambdaLR(self.opt_s, lr_lambda(cfg.warmup, cfg.steps))
        self.opt_t = self.sched_t = None
        if self.transform is not None:
            self.opt_t = torch.optim.AdamW(self.transform.parameters(), lr=cfg.lr_transform, weight_decay=0.0)
            self.sched_t = torch.optim.lr_scheduler.LambdaLR(self.opt_t, lr_lambda(cfg.warmup, cfg.steps))
        self.mix_cfg = MixConfig(**cfg.mix)
        self.mix_gen = torch.Generator().manual_seed(cfg.seed + 7919 * self.rank)
        self.relative = self.spec.output == "relative"
        self.step = 0

    # ----------------------------------------------------------------------------------- losses

    def kd(self, student_depth: torch.Tensor, teacher_depth: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.relative:
            return ssi_kd_loss(1.0 / student_depth, teacher_depth, self.cfg.w_grad)
        return depth_kd_loss(student_depth, teacher_depth, self.cfg.w_grad, self.cfg.w_normal)

    def _ctx(self):
        return autocast(self.device, self.precision)

    def _transform_step(self, rgb: torch.Tensor, logs: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """T's updates: BN statistics + content (+ disagreement). Returns T(x) and the teacher's
        depth on it from the last update's forward pass (None when that pass did not run)."""
        cfg = self.cfg
        self.transform.train()
        t_depth = None
        for _ in range(cfg.transform_steps):
            with self._ctx():
                x_t = self.transform(rgb).clamp(0, 1)
                if self.bn_hooks or cfg.w_adv > 0:
                    t_depth = self.teacher.depth(x_t)
                if cfg.w_adv > 0:
                    self.student.eval()
                    s_depth = self.ddp_student(x_t)
                    self.student.train()
            # every loss in fp32: the hooks' moments are fp32, the networks' outputs are cast
            content = F.l1_loss(x_t.float(), rgb.float())
            loss_t = cfg.w_content * content
            logs["content"] = content.item()
            if self.bn_hooks:
                bn = torch.stack([h.loss(cfg.bn_loss == "normalized") for h in self.bn_hooks]).sum()
                loss_t = loss_t + cfg.w_bn * bn
                logs["bn"] = bn.item()
            if cfg.w_adv > 0:
                adv = self.kd(s_depth.float(), t_depth)["total"]
                loss_t = loss_t - cfg.w_adv * adv
                logs["adv"] = adv.item()
            self.opt_t.zero_grad(set_to_none=True)
            loss_t.backward()
            torch.nn.utils.clip_grad_norm_(self.transform.parameters(), cfg.clip)
            self.opt_t.step()
            self.opt_s.zero_grad(set_to_none=True)  # the disagreement term reached S: discard
        self.sched_t.step()
        if cfg.refresh_kd_target:
            with torch.no_grad(), self._ctx():
                self.transform.eval()
                return self.transform(rgb).clamp(0, 1).float(), None
        return x_t.detach().float(), None if t_depth is None else t_depth.detach()

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg = self.cfg
        rgb = batch["rgb"].to(self.device, non_blocking=True)
        logs: dict[str, float] = {}
        if cfg.mixing:
            rgb, _, _, pasted = mix_objects(rgb, batch["depth"].to(self.device), batch["inst"].to(self.device),
                                            self.mix_cfg, self.mix_gen)
            logs["mix_pixels"] = pasted.float().mean().item()
        rgb = rgb.contiguous(memory_format=self.memory_format)
        t_depth = None
        if self.transform is not None:
            rgb, t_depth = self._transform_step(rgb, logs)
        # --- S step: KD on the (transformed) images
        self.student.train()
        if t_depth is None:
            with torch.no_grad(), self._ctx():
                t_depth = self.teacher.depth(rgb)
        with self._ctx():
            s_depth = self.ddp_student(rgb)
        losses = self.kd(s_depth.float(), t_depth.float())
        self.opt_s.zero_grad(set_to_none=True)
        losses["total"].backward()
        logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.student.parameters(), cfg.clip))
        self.opt_s.step()
        self.sched_s.step()
        logs.update({f"kd_{k}": v.item() for k, v in losses.items()})
        logs["lr"] = self.sched_s.get_last_lr()[0]
        self.step += 1
        self._last = {"input": batch["rgb"][:4], "transformed": rgb[:4].detach().cpu(),
                      "teacher": t_depth[:4].detach().cpu(), "student": s_depth[:4].detach().float().cpu()}
        return logs

    # ------------------------------------------------------------------------------ checkpoints

    def state(self) -> dict[str, Any]:
        unwrap = lambda m: m.module if hasattr(m, "module") else m  # noqa: E731
        return {
            "step": self.step, "config": asdict(self.cfg), "rng": _rng_state(),
            "mix_gen": self.mix_gen.get_state(),
            "model_arch": self.cfg.student, "model": contiguous_state(self.student.state_dict()),
            "model_range": {"min_depth": self.cfg.min_depth, "max_depth": self.cfg.max_depth},
            "input_size": list(self.size), "teacher_spec": self.spec.to_dict(),
            "opt_s": self.opt_s.state_dict(), "sched_s": self.sched_s.state_dict(),
            "transform": contiguous_state(unwrap(self.transform).state_dict()) if self.transform is not None else None,
            "opt_t": self.opt_t.state_dict() if self.opt_t else None,
            "sched_t": self.sched_t.state_dict() if self.sched_t else None,
        }

    def save(self, path: Path) -> None:
        if self.rank != 0:
            return
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)  # a crash never leaves a half-written checkpoint

    def load(self, path: Path) -> None:
        ckpt = torch.load(path, map_location=self.device, weights_only=False)
        saved = {**asdict(TrainConfig()), **ckpt["config"]}  # keys added since the run started: their defaults
        old = {k: v for k, v in saved.items() if k not in RESUMABLE_KEYS}
        new = {k: v for k, v in asdict(self.cfg).items() if k not in RESUMABLE_KEYS}
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if diff:
            raise ValueError(f"--resume: {path} was trained with another config (differs in: {', '.join(diff)}); "
                             "use the same options or a new --out")
        self.student.load_state_dict(ckpt["model"])
        self.opt_s.load_state_dict(ckpt["opt_s"])
        self.sched_s.load_state_dict(ckpt["sched_s"])
        if self.transform is not None:
            unwrap = self.transform.module if hasattr(self.transform, "module") else self.transform
            unwrap.load_state_dict(ckpt["transform"])
            self.opt_t.load_state_dict(ckpt["opt_t"])
            self.sched_t.load_state_dict(ckpt["sched_t"])
        self.mix_gen.set_state(ckpt["mix_gen"])
        _set_rng_state(ckpt["rng"])
        self.step = ckpt["step"]


def make_loader(cfg: TrainConfig, size: tuple[int, int]) -> DataLoader:
    stream = ShardStream(cfg.shards, size, seed=cfg.seed)
    return DataLoader(stream, batch_size=cfg.batch_size, num_workers=cfg.workers, drop_last=True,
                      persistent_workers=cfg.workers > 0, pin_memory=torch.cuda.is_available())


def train(cfg: TrainConfig, show_progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a distillation; returns a summary. Writes OUT/checkpoint.pt, OUT/student.pt
    (final), OUT/config.json and TensorBoard logs in OUT/tb."""
    from tqdm import tqdm

    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT
    if ckpt_path.exists() and not cfg.resume:
        raise FileExistsError(f"{out} already holds a run ({CHECKPOINT}); pass --resume to continue it, "
                              "or choose a new --out (nothing was overwritten)")
    if cfg.resume and not ckpt_path.exists():
        raise FileNotFoundError(f"--resume: no {CHECKPOINT} in {out}")
    out.mkdir(parents=True, exist_ok=True)
    d = Distiller(cfg)
    if cfg.resume:
        d.load(ckpt_path)
    if d.rank == 0:
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
        print(f"student {cfg.student}: {count_params(d.student) / 1e6:.2f} M parameters, "
              f"{count_macs(d.student, d.size) / 1e9:.2f} GMACs at {d.size[0]}x{d.size[1]}; "
              f"teacher: {sum(p.numel() for p in d.teacher.parameters()) / 1e6:.2f} M parameters, "
              f"{len(d.bn_hooks)} BN layers hooked; device {d.device}, "
              f"{'channels_last' if cfg.channels_last else 'contiguous'} layout, "
              f"{describe_precision(cfg.precision, d.precision, d.device)}")
    writer = _tensorboard(out / "tb") if d.rank == 0 else None
    loader = make_loader(cfg, d.size)
    batches = iter(loader)
    # exact resume: the stream is a function of the seed, so skip the batches already used
    for _ in range(d.step):
        next(batches)
    # steady state, from the second step on: the first waits for worker start and the shuffle buffer
    wait = compute = 0.0
    steady_steps, startup = 0, 0.0
    t_start = t_begin = time.perf_counter()
    logs: dict[str, float] = {}
    with tqdm(total=cfg.steps, initial=d.step, unit="step", disable=not show_progress or d.rank != 0) as bar:
        while d.step < cfg.steps:
            t0 = time.perf_counter()
            batch = next(batches)
            t1 = time.perf_counter()
            logs = d.train_step(batch)
            t2 = time.perf_counter()
            if startup == 0.0:
                startup = t2 - t_begin
            else:
                wait, compute, steady_steps = wait + t1 - t0, compute + t2 - t1, steady_steps + 1
            bar.update(1)
            if d.step % cfg.log_every == 0 or d.step == cfg.steps:
                ips = cfg.batch_size * d.world * cfg.log_every / max(1e-9, (t2 - t_start))
                t_start = time.perf_counter()
                bar.set_postfix(kd=f"{logs['kd_total']:.3f}", bn=f"{logs.get('bn', 0):.2f}", img_s=f"{ips:.1f}")
                if writer:
                    for k, v in logs.items():
                        writer.add_scalar(f"train/{k}", v, d.step)
                    writer.add_scalar("train/images_per_s", ips, d.step)
                    writer.add_scalar("train/data_wait_share", wait / max(1e-9, wait + compute), d.step)
                    _log_images(writer, d._last, d.step)
            if cfg.val and d.rank == 0 and (d.step % cfg.val_every == 0 or d.step == cfg.steps):
                from distill.evaluate import evaluate_model

                metrics = evaluate_model(d.student, cfg.val, d.size, d.device, precision=d.precision)["overall"]
                if writer:
                    for k, v in metrics.items():
                        writer.add_scalar(f"val/{k}", v, d.step)
            if d.step % cfg.ckpt_every == 0 or d.step == cfg.steps:
                d.save(ckpt_path)
    if d.rank == 0:
        d.save(out / "student.pt")
    if writer:
        writer.close()
    return {"steps": d.step, "last": logs, "data_wait_share": wait / max(1e-9, wait + compute), "out": str(out),
            "images_per_s": cfg.batch_size * d.world * steady_steps / max(1e-9, wait + compute), "startup_s": startup}


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
