"""The distillation step: models, optimisers and one update of T and the student.

Per step: a batch of simulated images -> object-wise mixing -> T adapts the images toward the
teacher's BatchNorm statistics (one T update) -> the student learns the teacher's depth on T's
images (one student update). `distill/train.py` runs the loop around it.
"""

from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from distill.checkpoint import read_checkpoint, save_checkpoint
from distill.config import RESUMABLE_KEYS, TrainConfig, config_differences
from distill.layers import BNStatsHook, FeatureTap, feature_hint_loss, kd_loss
from distill.mixing import MixConfig, mix_objects
from distill.networks import build_depth_model, hinted_modules, inherit_weights, require_matching_features
from distill.networks.transform import build_transform
from distill.runtime import (autocast, contiguous_state, lr_lambda, memory_format, pick_device, resolve_precision,
                             to_memory_format)
from distill.teacher import (STUDENT_OUTPUTS, TeacherError, TeacherSpec, load_teacher, require_batchnorm,
                             teacher_digest)
from simgen.options import ConfigError

# each rank mixes with its own generator: seed + MIX_SEED_STRIDE * rank (a prime, so ranks of
# neighbouring seeds do not collide for any realistic world size)
MIX_SEED_STRIDE = 7919


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_same_teacher(saved: dict[str, Any], now: str | None, cfg: TrainConfig, path: Path) -> None:
    """Refuse to reuse or continue a run distilled from other teacher files than those --teacher names
    now (same path, other content: a refitted or re-exported teacher). Runs saved before the digest was
    recorded, and code-only teachers, are not checked."""
    then = saved.get("teacher_sha256")
    if then and now and then != now:
        raise ConfigError(f"{path} was distilled from another teacher: the file behind --teacher "
                          f"{cfg.teacher.get('source')} has changed since (sha256 {then[:12]} then, {now[:12]} now); "
                          "choose a new --out (nothing was overwritten)")


class NonFiniteLoss(ConfigError):
    """A loss went NaN or infinite: the run stops there, its last checkpoint kept."""


def require_finite(loss: torch.Tensor, step: int, what: str, culprit: str | Callable[[], str]) -> None:
    """Stop at a non-finite loss, naming the step and where it most likely came from (`culprit`, or a function
    that finds it: asked only when the loss is not finite)."""
    if not torch.isfinite(loss).all():
        where = culprit() if callable(culprit) else culprit
        raise NonFiniteLoss(f"step {step}: {what} is {loss.item()} (non-finite), most likely from {where}: check "
                            "--teacher-scale, --teacher-output and the learning rates; the last checkpoint is kept")


class Distiller:
    """Holds the models, optimisers and the step function; `distill.train.train()` runs the loop."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.memory_format = memory_format(cfg.channels_last)
        self.rank, self.world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            self.rank, self.world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        torch.manual_seed(cfg.seed)
        self.teacher = to_memory_format(load_teacher(TeacherSpec(**cfg.teacher), self.device), cfg.channels_last)
        self.spec = self.teacher.spec  # with what the teacher's file says (its input size, ...)
        self.teacher_sha256 = teacher_digest(self.spec)
        self.hw = self.spec.input_size.hw
        if min(self.hw) < 32:
            raise ConfigError(f"input size {self.spec.input_size}: the student needs at least 32x32")
        self._build_student()
        bn_layers, self.plain_kd_reason = self._bn_layers()
        self.transform = (to_memory_format(build_transform().to(self.device), cfg.channels_last)
                          if cfg.transform == "on" or (cfg.transform == "auto" and not self.plain_kd_reason) else None)
        self.bn_hooks = [BNStatsHook(m, all_reduce=self.world > 1) for m in (bn_layers if self.transform else [])]
        self.student_fwd, self.transform_fwd = self.student, self.transform
        if self.world > 1:
            self.student_fwd = torch.nn.parallel.DistributedDataParallel(self.student)
            if self.transform is not None:
                self.transform_fwd = torch.nn.parallel.DistributedDataParallel(self.transform)
        self._build_optimisers()
        self.mix_cfg = MixConfig(**cfg.mix)
        self.mix_gen = torch.Generator().manual_seed(cfg.seed + MIX_SEED_STRIDE * self.rank)
        self.step = 0
        self.last_images: dict[str, torch.Tensor] = {}  # a few images of the last step, for TensorBoard

    def _build_student(self) -> None:
        """The student module (under DDP the forward passes go through `student_fwd`), started from the
        teacher where asked, and the feature taps of --w-feature."""
        cfg = self.cfg
        self.student = to_memory_format(build_depth_model(cfg.student, cfg.min_depth, cfg.max_depth,
                                                          cfg.student_imagenet).to(self.device), cfg.channels_last)
        if cfg.init_student == "teacher":
            inherit_weights(self.student, self.teacher.model)
        self.feature_taps: tuple[FeatureTap, FeatureTap] | None = None
        if cfg.w_feature > 0:
            require_matching_features(self.student, self.teacher.model)
            self.feature_taps = (FeatureTap(*hinted_modules(self.student)),
                                 FeatureTap(*hinted_modules(self.teacher.model)))

    def _build_optimisers(self) -> None:
        cfg = self.cfg
        self.opt_s = torch.optim.AdamW(self.student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched_s = torch.optim.lr_scheduler.LambdaLR(self.opt_s, lr_lambda(cfg.warmup, cfg.steps))
        self.opt_t = self.sched_t = None
        if self.transform is not None:
            self.opt_t = torch.optim.AdamW(self.transform.parameters(), lr=cfg.lr_transform, weight_decay=0.0)
            self.sched_t = torch.optim.lr_scheduler.LambdaLR(self.opt_t, lr_lambda(cfg.warmup, cfg.steps))

    def _bn_layers(self) -> tuple[list, str | None]:
        """The teacher's BN layers for T's statistics loss, or why there are none. With --transform
        on that is an error; with auto the run is plain KD."""
        if self.cfg.transform == "off" or self.cfg.w_bn <= 0:
            return [], None
        try:
            return require_batchnorm(self.teacher), None
        except TeacherError as e:
            if self.cfg.transform == "on":
                raise
            return [], str(e)

    def describe_method(self) -> str:
        parts = ["KD (" + ("scale-and-shift-invariant, " if self.teacher.relative else "") +
                 f"teacher output: {self.spec.output})"]
        parts += [f"encoder feature hints x{self.cfg.w_feature:g}"] if self.feature_taps else []
        parts += ["student BN on the teacher's running statistics"] if self.cfg.student_bn == "teacher" else []
        parts += ["object-wise mixing"] if self.cfg.mixing else []
        if self.transform is not None:
            parts.append(f"transformation network ({len(self.bn_hooks)} BN layers hooked)")
        elif self.plain_kd_reason:
            parts.append(f"no transformation network (--transform auto: {self.plain_kd_reason})")
        return " + ".join(parts)

    # ------------------------------------------------------------------------------------ steps

    def _ctx(self):
        return autocast(self.device, self.precision)

    def transform_loss(self, rgb: torch.Tensor,
                       logs: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """T's loss on a batch: BN statistics of the teacher on T(x) + content (L1 to x). Returns the loss,
        T(x) and the teacher's depth on T(x) (that pass filled the BN hooks)."""
        cfg = self.cfg
        with self._ctx():
            x_t = self.transform_fwd(rgb).clamp(0, 1)
            t_depth = self.teacher.target(x_t)
        # every loss in fp32: the hooks' moments are fp32, the networks' outputs are cast
        content = F.l1_loss(x_t.float(), rgb.float())
        loss = cfg.w_content * content
        logs["content"] = content.item()
        if self.bn_hooks:
            bn = sum(h.loss(cfg.bn_loss == "normalized") for h in self.bn_hooks)
            loss = loss + cfg.w_bn * bn
            logs["bn"] = bn.item()
        return loss, x_t, t_depth

    def _transform_step(self, rgb: torch.Tensor, logs: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """One update of T; returns T(x) of that update's forward pass and the teacher's depth on it (the
        student's images and target: one T and teacher pass less per step than the paper's)."""
        self.transform.train()
        loss, x_t, t_depth = self.transform_loss(rgb, logs)
        require_finite(loss, self.step + 1, "the transformation network's loss", "the teacher's BatchNorm statistics")
        self.opt_t.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.transform.parameters(), self.cfg.clip)
        self.opt_t.step()
        self.sched_t.step()
        return x_t.detach().float(), t_depth.detach()

    def _mix(self, batch: dict[str, torch.Tensor], rgb: torch.Tensor, logs: dict[str, float]) -> torch.Tensor:
        """Object-wise mixing of the simulated samples of the batch (--images samples have no masks)."""
        sim = batch.get("sim", torch.ones(len(rgb), dtype=torch.bool))
        if not self.cfg.mixing or not sim.any():
            return rgb
        on = sim.to(self.device)
        depth = batch["depth"].to(self.device)
        mixed, _, _, pasted = mix_objects(rgb[on], depth[on], batch["inst"][sim].to(self.device), self.mix_cfg,
                                          self.mix_gen)
        rgb = rgb.clone()
        rgb[on] = mixed
        logs["mix_pixels"] = pasted.float().mean().item()
        return rgb

    def student_loss(self, rgb: torch.Tensor, t_depth: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The KD terms (plus feature hints) of the student on `rgb` against the teacher's `t_depth`; the
        teacher's tapped features must be those of its pass on `rgb`."""
        with self._ctx():
            s_depth = self.student_fwd(rgb)
        losses = kd_loss(self.spec.output, s_depth.float(), t_depth.float(), self.cfg.w_grad, self.cfg.w_normal)
        if self.feature_taps:
            theirs = self.feature_taps[1].out
            if hasattr(self.student, "hint_channels"):  # a slim student: the teacher's channels it was started from
                theirs = [t.index_select(1, ix.to(t.device)) for t, ix in zip(theirs, self.student.hint_channels)]
            losses["feature"] = feature_hint_loss(self.feature_taps[0].out, theirs)
            losses["total"] = losses["total"] + self.cfg.w_feature * losses["feature"]
        return losses, s_depth

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        logs: dict[str, float] = {}
        rgb = self._mix(batch, batch["rgb"].to(self.device, non_blocking=True), logs)
        rgb = rgb.contiguous(memory_format=self.memory_format)
        if self.transform is not None:
            rgb, t_depth = self._transform_step(rgb, logs)
        else:
            with torch.no_grad(), self._ctx():
                t_depth = self.teacher.target(rgb)
        self._student_learns()
        losses, s_depth = self.student_loss(rgb, t_depth)
        require_finite(losses["total"], self.step + 1, "the student's KD loss", lambda: "the student"
                       if torch.isfinite(t_depth).all() else "the teacher's depth on these images")
        self.opt_s.zero_grad(set_to_none=True)
        losses["total"].backward()
        logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.student.parameters(), self.cfg.clip))
        self.opt_s.step()
        self.sched_s.step()
        logs.update({f"kd_{k}": v.item() for k, v in losses.items()})
        logs["lr"] = self.sched_s.get_last_lr()[0]
        self.step += 1
        self.last_images = {"input": batch["rgb"][:4], "transformed": rgb[:4].detach().cpu(),
                            "teacher": t_depth[:4].detach().cpu(), "student": s_depth[:4].detach().float().cpu()}
        return logs

    def _student_learns(self) -> None:
        """The student in training mode; with --student-bn teacher its BatchNorm layers stay in eval mode:
        they normalise with the running statistics inherited from the teacher and never update them."""
        self.student.train()
        if self.cfg.student_bn == "teacher":
            for m in self.student.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()

    # ------------------------------------------------------------------------------ checkpoints

    def save(self, path: Path) -> None:
        """A checkpoint (distill/checkpoint.py) that is also a model file: eval, export and
        --teacher read it; --resume reads the rest. Under DDP every rank calls it: each rank's random
        states are gathered (a resumed rank continues its own draws), and rank 0 writes."""
        states = {"rng": rng_state(), "mix_gen": self.mix_gen.get_state()}
        per_rank = [None] * self.world
        if self.world > 1:
            torch.distributed.gather_object(states, per_rank if self.rank == 0 else None, dst=0)
        else:
            per_rank = [states]
        if self.rank != 0:
            return
        t = self.transform is not None
        save_checkpoint(path, self.student, self.cfg.student, self.spec.input_size, self.cfg.min_depth,
                        self.cfg.max_depth, output=STUDENT_OUTPUTS[self.spec.output], step=self.step,
                        config=asdict(self.cfg), rng=states["rng"], mix_gen=states["mix_gen"], ranks=per_rank,
                        teacher_spec=self.spec.to_dict(),
                        teacher_sha256=self.teacher_sha256, opt_s=self.opt_s.state_dict(),
                        sched_s=self.sched_s.state_dict(),
                        transform=contiguous_state(self.transform.state_dict()) if t else None,
                        opt_t=self.opt_t.state_dict() if t else None, sched_t=self.sched_t.state_dict() if t else None)

    def load(self, path: Path) -> None:
        """Continue from a checkpoint. Under DDP rank 0 reads it and sends it to the others (their --out may be
        another machine's folder); each rank takes back its own random states."""
        if self.world > 1:
            box = [read_checkpoint(path, map_location="cpu") if self.rank == 0 else None]
            torch.distributed.broadcast_object_list(box, src=0)
            ckpt = box[0]
        else:
            ckpt = read_checkpoint(path, map_location=self.device)
        diff = config_differences(ckpt["config"], self.cfg, ignore=RESUMABLE_KEYS, where=f"--resume {path}")
        if diff:
            raise ConfigError(f"--resume: {path} was trained with another config (differs in: {', '.join(diff)}); "
                              "use the same options or a new --out")
        check_same_teacher(ckpt, self.teacher_sha256, self.cfg, path)
        self.student.load_state_dict(ckpt["model"])
        self.opt_s.load_state_dict(ckpt["opt_s"])
        self.sched_s.load_state_dict(ckpt["sched_s"])
        if self.transform is not None:
            self.transform.load_state_dict(ckpt["transform"])
            self.opt_t.load_state_dict(ckpt["opt_t"])
            self.sched_t.load_state_dict(ckpt["sched_t"])
        mine = ckpt["ranks"][self.rank] if len(ckpt.get("ranks") or []) == self.world else ckpt
        self.mix_gen.set_state(mine["mix_gen"])
        set_rng_state(mine["rng"])
        self.step = ckpt["step"]
