"""Data-free distillation: train the transformation network T and the student S, top to bottom.

Per step: a batch of simulated images -> object-wise mixing -> T adapts the images toward the
teacher's BatchNorm statistics (T steps) -> S learns the teacher's depth on T's images (one S
step). Every part is one flag, so the paper's ablations are a loop over flags.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from distill.checkpoint import read_checkpoint, save_checkpoint
from distill.data import ImageStream, Interleaved, ShardStream, readable_images
from distill.layers import (BNStatsHook, FeatureTap, feature_hint_loss, parse_bn_layers, select_bn_layers,
                           total_variation)
from distill.mixing import MixConfig, mix_objects
from distill.networks import (ARCHITECTURES, HINT_LEVELS, build_depth_model, count_macs, count_params,
                              hinted_modules, inherit_weights, require_matching_features)
from distill.networks.transform import TRANSFORM_NETS, build_transform
from distill.runtime import (PRECISIONS, autocast, contiguous_state, describe_precision, memory_format, pick_device,
                             resolve_precision, to_memory_format)
from distill.teacher import (TeacherError, TeacherSpec, kd_loss, load_teacher, render_depth_loss, require_batchnorm,
                             teacher_digest)
from simgen.options import ConfigError, auto_on_off, field_names, option
from simgen.shards import DatasetReader

CHECKPOINT = "checkpoint.pt"   # the latest state, for --resume
FINAL = "student.pt"           # written once, when the run finishes
RUN_FILES = {CHECKPOINT, FINAL, "config.json", "tb"}  # what a run directory may hold
# what may differ between a run and its --resume (everything else must match)
# each rank mixes with its own generator: seed + MIX_SEED_STRIDE * rank (a prime, so ranks of
# neighbouring seeds do not collide for any realistic world size)
MIX_SEED_STRIDE = 7919
RESUMABLE_KEYS = {"steps", "resume", "log_every", "ckpt_every", "workers", "device", "val", "val_every",
                  "precision", "channels_last", "skip_corrupt", "out"}
# how a run was executed, not what it computes: a finished run counts as the same run across these
RUN_KEYS = (RESUMABLE_KEYS - {"steps"}) | {"out"}
INIT_STUDENT = ("random", "teacher")  # where the student's weights start (--init-student)
STUDENT_BN = ("batch", "teacher", "encoder")  # what the student's BatchNorm layers normalise with (--student-bn)


@dataclass
class TrainConfig:
    """Every option of a distillation run, with its one default. `distill train` builds its flags
    from these fields (simgen/options.py); OUT/config.json holds them and `--config` reads it back."""

    shards: list[str] = option([], "simgen dataset directory", repeat=True, metavar="DIR")
    images: list[str] = option([], "unlabeled images for KD: a folder (jpg/png, searched recursively, any sizes) or a "
                               ".txt list of image paths; combinable with --shards (see --images-share)",
                               repeat=True, metavar="DIR")
    images_share: float = option(0.5, "share of each batch taken from --images when --shards is given too (object-wise "
                                 "mixing applies to the shard samples only)")
    out: str = option("runs/distill", "run directory (checkpoint.pt, student.pt, config.json, tb/)")
    teacher: dict[str, Any] = option({}, "TeacherSpec fields (flags --teacher, --teacher-*)", cli=False)
    student: str = option("mobilenetv2", "student architecture", choices=ARCHITECTURES)
    student_imagenet: str | None = option(None, "torchvision ImageNet state dict file for the student's encoder", parse=str)
    init_student: str = option("random", "random, or teacher: start the student from the teacher's own weights, "
                               "each tensor from the teacher's of the same name and shape (a resnet10 student "
                               "from a resnet18/34 teacher of this project: its stem, the first block of each stage "
                               "and its decoder; distill/networks/inherit.py)", choices=INIT_STUDENT)
    student_bn: str = option("batch", "what the student's BatchNorm layers normalise with while it learns: batch "
                             "(each batch's statistics; the running statistics follow the training images: sims, "
                             "for a data-free student) or teacher (the running statistics it started with, kept: "
                             "with --init-student teacher those are the teacher's, from its real training images, "
                             "so the student normalises every image as the teacher does; the layers' scales and "
                             "shifts still learn), or encoder (the teacher's in the encoder only; the decoder's "
                             "layers follow the batch)", choices=STUDENT_BN)
    min_depth: float = option(0.1, "smallest depth the student outputs (m)")
    max_depth: float = option(10.0, "largest depth the student outputs (m)")
    steps: int = option(2000, "student updates")
    batch_size: int = option(8, "images per step (per process under torchrun)")
    lr: float = option(1e-3, "student learning rate (AdamW, cosine schedule after warm-up)")
    # T's learning rate and BN term: the measured better form (docs/distill.md, step 3); the paper's
    # form is --bn-loss sum --lr-transform 1e-4
    lr_transform: float = option(1e-3, "learning rate of the transformation network")
    weight_decay: float = option(1e-4, "AdamW weight decay of the student")
    warmup: int = option(100, "steps of linear learning-rate warm-up")
    clip: float = option(1.0, "gradient norm clip of student and transformation network")
    mixing: bool = option(True, "object-wise mixing")
    mix: dict[str, Any] = option(lambda: asdict(MixConfig()), "MixConfig fields (flags --mix-*)", cli=False)
    transform: str = option("auto", "transformation network T: on, off, or auto (on where the teacher supports "
                            "it: BatchNorm layers reachable with gradients; otherwise plain KD, said at start)",
                            parse=auto_on_off)
    transform_net: str = option("residual", "T's design: residual (a conv net adding an image: can change any pixel) "
                                "or photometric (a tiny net predicting per-image colour gain and offset, contrast, "
                                "saturation, gamma, blur or sharpening and noise: can change how a render looks, not "
                                "what it shows)", choices=TRANSFORM_NETS)
    transform_steps: int = option(1, "T updates per student update")
    transform_until: int = option(0, "student step at which T stops learning: its learning rate decays to 0 there "
                                  "(cosine after warm-up) and from then on it transforms with its last weights; "
                                  "0 = T learns all run")
    transform_share: float = option(1.0, "share of each batch the student learns on through T; the rest it learns on "
                                    "as they came (after mixing), read by the teacher again: one more teacher pass "
                                    "a step; 1 = every image through T (the paper's step)")
    w_bn: float = option(1.0, "weight of T's BatchNorm-statistics loss")
    bn_loss: str = option("normalized", "BN term of T: each layer normalised by its running statistics, so that "
                          "every layer counts alike, or the paper's plain sum over layers (see BNStatsHook.loss)",
                          choices=("normalized", "sum"))
    bn_layers: str = option("all", "which of the teacher's BN layers T's statistics term counts: all, the first "
                            "(early: colour, contrast, texture) or second half (late) in model order, or a weight "
                            "for each half as EARLY:LATE (0.3:1; all = 1:1, late = 0:1)")
    w_content: float = option(10.0, "weight of T's content loss (L1 to its input)")
    w_tv: float = option(0.0, "weight of a total-variation prior on T's change to the image (DeepInversion's image "
                         "prior, on the change: it penalises the high-frequency texture T can add, not the render's "
                         "own edges); 0 = off")
    w_render_depth: float = option(0.0, "weight of a term of T pulling the teacher's depth on T(x) toward the render's "
                                   "own depth (up to scale; scale and shift for relative teachers): T learns to make "
                                   "renders the teacher reads right, not only ones with its BN statistics; needs "
                                   "--shards; 0 = off")
    w_adv: float = option(0.0, "weight of the teacher-student disagreement (DFAD-style) term of T; 0 = off")
    w_grad: float = option(1.0, "weight of the depth-gradient term of the KD loss")
    w_normal: float = option(1.0, "weight of the surface-normal term of the KD loss")
    w_feature: float = option(0.0, "weight of a feature term of the KD loss: the student's encoder features matched to "
                              "the teacher's at every level, on the same images (FitNets' hints; a student whose "
                              "encoder has the teacher's channels: resnet10/18/34 under a resnet18/34 teacher of this "
                              "project); 0 = off")
    hint_levels: str = option("encoder", "where --w-feature matches features: encoder (its five levels) or all (the "
                              "encoder's and each of the decoder's five up-sampling blocks: the student's decoder must "
                              "have the teacher's widths)", choices=HINT_LEVELS)
    # False: S learns on T's images and teacher depth of T's own step (one T and teacher pass less
    # per step). True: both are computed again after T's update, as in the paper's step.
    refresh_kd_target: bool = option(False, "run T and the teacher again after T's update for the student's target "
                                     "(the paper's step; one T and teacher pass more per step)")
    seed: int = option(0, "seed of initialisation, data order, augmentation and mixing")
    init_output: bool = option(False, "before the first step, set the student's output bias to the teacher's median "
                               "depth on the first batch (metric teachers; see DepthNet.start_at_depth)")
    workers: int = option(2, "DataLoader worker processes")
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    precision: str = option("auto", "auto: bf16 autocast where the device runs it natively (CUDA with bf16, a CPU "
                            "with avx512_bf16 or AMX), fp32 elsewhere; weights and checkpoints stay fp32",
                            choices=PRECISIONS)
    channels_last: bool = option(True, "NHWC memory layout for every network and input (faster on CPUs and GPUs)")
    log_every: int = option(20, "steps between log lines and TensorBoard points")
    ckpt_every: int = option(500, "steps between checkpoints")
    val: str | None = option(None, "RGB-D folder evaluated every --val-every steps", parse=str)
    val_every: int = option(500, "steps between validations")
    resume: bool = option(False, "continue the run in --out exactly where it stopped")
    skip_corrupt: bool = option(False, "skip shards that fail their sha256 or cannot be read (each is reported on "
                                "stderr) instead of stopping at the first")

    def __post_init__(self) -> None:
        self.shards = [str(Path(s).resolve()) for s in self.shards]
        self.images = [str(Path(s).resolve()) for s in self.images]
        if self.shards and self.images and not 0 < self.images_share < 1:
            raise ConfigError(f"--images-share must be between 0 and 1 when --shards and --images are both given, "
                              f"got {self.images_share}")
        known = field_names(TeacherSpec)  # a version-1 run's spec may carry keys since removed
        self.teacher = TeacherSpec(**{k: v for k, v in self.teacher.items() if k in known}).to_dict()
        self.mix = asdict(MixConfig(**self.mix))
        try:
            self.transform = auto_on_off(self.transform)
        except ConfigError as e:
            raise ConfigError(f"--transform {e}") from None
        for name in ("steps", "batch_size", "transform_steps", "log_every", "ckpt_every", "val_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.transform_until <= self.steps:
            raise ConfigError(f"--transform-until must be between 0 (T learns all run) and --steps {self.steps}, "
                              f"got {self.transform_until}")
        if self.bn_loss not in ("sum", "normalized"):
            raise ConfigError(f"bn_loss {self.bn_loss!r}: choose 'sum' or 'normalized'")
        try:
            parse_bn_layers(self.bn_layers)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if not 0 < self.transform_share <= 1:
            raise ConfigError(f"--transform-share must be in (0, 1], got {self.transform_share} (for no T at all: "
                              "--transform off)")
        if self.transform_net not in TRANSFORM_NETS:
            raise ConfigError(f"transform_net {self.transform_net!r}: choose one of {', '.join(TRANSFORM_NETS)}")
        if self.w_tv < 0:
            raise ConfigError(f"--w-tv must be 0 or more, got {self.w_tv}")
        if self.w_render_depth < 0:
            raise ConfigError(f"--w-render-depth must be 0 or more, got {self.w_render_depth}")
        if self.w_feature < 0:
            raise ConfigError(f"--w-feature must be 0 or more, got {self.w_feature}")
        if self.hint_levels not in HINT_LEVELS:
            raise ConfigError(f"hint_levels {self.hint_levels!r}: choose one of {', '.join(HINT_LEVELS)}")
        if self.hint_levels != "encoder" and self.w_feature == 0:
            raise ConfigError(f"--hint-levels {self.hint_levels} says where feature hints apply; give them a weight "
                              "with --w-feature W")
        if self.w_render_depth > 0 and (not self.shards or self.transform == "off"):
            raise ConfigError("--w-render-depth is a term of T's loss on renders: it needs --shards and T "
                              "(--transform on or auto)")
        if self.workers < 0:
            raise ConfigError(f"--workers must be 0 or more, got {self.workers}")
        if self.shards and self.images and self.image_count() in (0, self.batch_size):
            raise ConfigError(f"--images-share {self.images_share} of --batch-size {self.batch_size} leaves "
                              f"{self.image_count()} image(s) per batch; choose a share that mixes both")
        if self.init_student not in INIT_STUDENT:
            raise ConfigError(f"--init-student {self.init_student!r}: choose one of {', '.join(INIT_STUDENT)}")
        if self.init_student == "teacher" and (self.student_imagenet or self.init_output):
            raise ConfigError("--init-student teacher sets every weight of the student from the teacher; leave out "
                              + ("--student-imagenet" if self.student_imagenet else "--init-output"))
        if self.student_bn not in STUDENT_BN:
            raise ConfigError(f"--student-bn {self.student_bn!r}: choose one of {', '.join(STUDENT_BN)}")
        if self.student_bn != "batch" and self.init_student != "teacher":
            raise ConfigError(f"--student-bn {self.student_bn} keeps the BatchNorm statistics the student starts "
                              "with; only --init-student teacher starts it with the teacher's (a random student's are "
                              "0 and 1)")
        if not 0 < self.min_depth < self.max_depth:
            raise ConfigError(f"need 0 < --min-depth < --max-depth, got {self.min_depth} and {self.max_depth}")

    def image_count(self) -> int:
        """Samples per batch taken from --images."""
        if not self.images:
            return 0
        return self.batch_size if not self.shards else round(self.images_share * self.batch_size)


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
        self.teacher = to_memory_format(load_teacher(TeacherSpec(**cfg.teacher), self.device), cfg.channels_last)
        self.spec = self.teacher.spec  # with what the teacher's file says (its input size, ...)
        self.teacher_sha256 = teacher_digest(self.spec)
        self.hw = self.spec.input_size.hw
        if min(self.hw) < 32:
            raise ConfigError(f"input size {self.spec.input_size}: the student needs at least 32x32")
        # the modules themselves; under DDP the forward passes go through the wrappers below
        self.student = to_memory_format(build_depth_model(cfg.student, cfg.min_depth, cfg.max_depth,
                                                          cfg.student_imagenet).to(self.device), cfg.channels_last)
        if cfg.init_student == "teacher":
            inherit_weights(self.student, self.teacher.model)
        self.feature_taps: tuple[FeatureTap, FeatureTap] | None = None
        if cfg.w_feature > 0:
            require_matching_features(self.student, self.teacher.model, decoder=cfg.hint_levels == "all")
            self.feature_taps = (FeatureTap(*hinted_modules(self.student, cfg.hint_levels)),
                                 FeatureTap(*hinted_modules(self.teacher.model, cfg.hint_levels)))
        bn_layers, self.plain_kd_reason = self._bn_layers()
        self.transform = (to_memory_format(build_transform(cfg.transform_net).to(self.device), cfg.channels_last)
                          if cfg.transform == "on" or (cfg.transform == "auto" and not self.plain_kd_reason) else None)
        bn_layers = bn_layers if self.transform else []
        self.bn_hooks = [BNStatsHook(m, all_reduce=self.world > 1) for m, _ in bn_layers]
        self.bn_weights = [w for _, w in bn_layers]
        self.student_fwd, self.transform_fwd = self.student, self.transform
        if self.world > 1:
            self.student_fwd = torch.nn.parallel.DistributedDataParallel(self.student)
            if self.transform is not None:
                self.transform_fwd = torch.nn.parallel.DistributedDataParallel(self.transform)
        self.opt_s = torch.optim.AdamW(self.student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched_s = torch.optim.lr_scheduler.LambdaLR(self.opt_s, lr_lambda(cfg.warmup, cfg.steps))
        self.opt_t = self.sched_t = None
        if self.transform is not None:
            self.opt_t = torch.optim.AdamW(self.transform.parameters(), lr=cfg.lr_transform, weight_decay=0.0)
            t_steps = cfg.transform_until or cfg.steps
            self.sched_t = torch.optim.lr_scheduler.LambdaLR(self.opt_t, lr_lambda(cfg.warmup, t_steps))
        self.mix_cfg = MixConfig(**cfg.mix)
        self.mix_gen = torch.Generator().manual_seed(cfg.seed + MIX_SEED_STRIDE * self.rank)
        self.step = 0
        self.last_images: dict[str, torch.Tensor] = {}  # a few images of the last step, for TensorBoard

    def _bn_layers(self) -> tuple[list, str | None]:
        """The teacher's BN layers for T's statistics loss, or why there are none. With --transform
        on that is an error; with auto the run is plain KD."""
        if self.cfg.transform == "off" or self.cfg.w_bn <= 0:
            return [], None
        try:
            return select_bn_layers(require_batchnorm(self.teacher), self.cfg.bn_layers), None
        except TeacherError as e:
            if self.cfg.transform == "on":
                raise
            return [], str(e)

    def describe_method(self) -> str:
        parts = ["KD (" + ("scale-and-shift-invariant, " if self.teacher.relative else "") +
                 f"teacher output: {self.spec.output})"]
        where = "encoder and decoder" if self.cfg.hint_levels == "all" else "encoder"
        parts += [f"{where} feature hints x{self.cfg.w_feature:g}"] if self.feature_taps else []
        held = {"teacher": "student BN", "encoder": "student encoder BN"}.get(self.cfg.student_bn)
        parts += [f"{held} on the teacher's running statistics"] if held else []
        parts += ["object-wise mixing"] if self.cfg.mixing else []
        if self.transform is not None:
            cfg = self.cfg
            terms = [cfg.transform_net, f"{len(self.bn_hooks)} BN layers hooked"]
            terms += [f"{name} x{w:g}" for name, w in (("TV prior", cfg.w_tv), ("render depth", cfg.w_render_depth),
                                                       ("disagreement", cfg.w_adv)) if w > 0]
            terms += [f"student sees {cfg.transform_share:g} of each batch through T"] if cfg.transform_share < 1 else []
            parts.append(f"transformation network ({', '.join(terms)})")
        elif self.plain_kd_reason:
            parts.append(f"no transformation network (--transform auto: {self.plain_kd_reason})")
        return " + ".join(parts)

    # ----------------------------------------------------------------------------------- losses

    def kd(self, student_depth: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        return kd_loss(self.spec.output, student_depth, target, self.cfg.w_grad, self.cfg.w_normal)

    def _ctx(self):
        return autocast(self.device, self.precision)

    def transform_learns(self) -> bool:
        return self.cfg.transform_until == 0 or self.step < self.cfg.transform_until

    def _apply_transform(self, rgb: torch.Tensor) -> torch.Tensor:
        """T(x) without learning: no gradients, T in eval mode."""
        with torch.no_grad(), self._ctx():
            self.transform.eval()
            return self.transform_fwd(rgb).clamp(0, 1).float()

    def _transform_step(self, rgb: torch.Tensor, depth: torch.Tensor,
                        logs: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """T's updates: BN statistics + content (+ total variation, + render depth, + disagreement). `depth` is
        the render depth of each image (0 where there is none). Returns T(x) and the teacher's depth on it from
        the last update's forward pass (None when that pass did not run)."""
        cfg = self.cfg
        self.transform.train()
        t_depth = None
        for _ in range(cfg.transform_steps):
            with self._ctx():
                x_t = self.transform_fwd(rgb).clamp(0, 1)
                if self.bn_hooks or cfg.w_adv > 0 or cfg.w_render_depth > 0:
                    t_depth = self.teacher.target(x_t)
                if cfg.w_adv > 0:
                    self.student.eval()
                    s_depth = self.student_fwd(x_t)
                    self._student_learns()
            # every loss in fp32: the hooks' moments are fp32, the networks' outputs are cast
            content = F.l1_loss(x_t.float(), rgb.float())
            loss_t = cfg.w_content * content
            logs["content"] = content.item()
            if cfg.w_tv > 0:
                tv = total_variation(x_t.float() - rgb.float())
                loss_t = loss_t + cfg.w_tv * tv
                logs["tv"] = tv.item()
            if self.bn_hooks:
                bn = sum(w * h.loss(cfg.bn_loss == "normalized") for h, w in zip(self.bn_hooks, self.bn_weights))
                loss_t = loss_t + cfg.w_bn * bn
                logs["bn"] = bn.item()
            if cfg.w_render_depth > 0:
                render = render_depth_loss(self.spec.output, t_depth.float(), depth)
                loss_t = loss_t + cfg.w_render_depth * render
                logs["render_depth"] = render.item()
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
            return self._apply_transform(rgb), None
        return x_t.detach().float(), None if t_depth is None else t_depth.detach()

    def _share_through_transform(self, transformed: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """The student's images: the first --transform-share of the batch as T made them, the rest raw
        (the batch is shuffled, so which images go through T is random)."""
        if self.cfg.transform_share == 1:
            return transformed
        n = round(self.cfg.transform_share * len(raw))
        return torch.cat([transformed[:n], raw[n:].float()]).contiguous(memory_format=self.memory_format)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg = self.cfg
        rgb = batch["rgb"].to(self.device, non_blocking=True)
        logs: dict[str, float] = {}
        sim = batch.get("sim", torch.ones(len(rgb), dtype=torch.bool))  # --images samples: False
        on = sim.to(self.device)
        depth = batch["depth"].to(self.device) * on.view(-1, 1, 1, 1)  # render depth; 0: not a render
        if cfg.mixing and sim.any():  # only simulated samples have instance masks
            mixed, mixed_depth, _, pasted = mix_objects(rgb[on], depth[on], batch["inst"][sim].to(self.device),
                                                        self.mix_cfg, self.mix_gen)
            rgb, depth = rgb.clone(), depth.clone()
            rgb[on], depth[on] = mixed, mixed_depth
            logs["mix_pixels"] = pasted.float().mean().item()
        rgb = rgb.contiguous(memory_format=self.memory_format)
        t_depth = None
        if self.transform is not None and self.transform_learns():
            rgb_t, t_depth = self._transform_step(rgb, depth, logs)
        elif self.transform is not None:  # --transform-until passed: T keeps its last weights
            rgb_t = self._apply_transform(rgb)
        if self.transform is not None:
            rgb = self._share_through_transform(rgb_t, rgb)
            t_depth = t_depth if cfg.transform_share == 1 else None  # the teacher reads the new batch below
        # --- S step: KD on the (transformed) images
        self._student_learns()
        if t_depth is None:
            with torch.no_grad(), self._ctx():
                t_depth = self.teacher.target(rgb)
        if self.step == 0 and cfg.init_output and not self.teacher.relative:
            self._start_at_teacher_depth(t_depth)
        with self._ctx():
            s_depth = self.student_fwd(rgb)
        losses = self.kd(s_depth.float(), t_depth.float())
        if self.feature_taps:  # the taps hold this forward of S and the teacher's pass that gave t_depth
            losses["feature"] = feature_hint_loss(self.feature_taps[0].out, self.feature_taps[1].out)
            losses["total"] = losses["total"] + cfg.w_feature * losses["feature"]
        self.opt_s.zero_grad(set_to_none=True)
        losses["total"].backward()
        logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.student.parameters(), cfg.clip))
        self.opt_s.step()
        self.sched_s.step()
        logs.update({f"kd_{k}": v.item() for k, v in losses.items()})
        logs["lr"] = self.sched_s.get_last_lr()[0]
        self.step += 1
        self.last_images = {"input": batch["rgb"][:4], "transformed": rgb[:4].detach().cpu(),
                      "teacher": t_depth[:4].detach().cpu(), "student": s_depth[:4].detach().float().cpu()}
        return logs

    def _student_learns(self) -> None:
        """The student in training mode; with --student-bn teacher its BatchNorm layers (with encoder, the
        encoder's only) stay in eval mode: they normalise with the running statistics inherited from the
        teacher and never update them."""
        self.student.train()
        held = {"teacher": self.student, "encoder": self.student.encoder}.get(self.cfg.student_bn)
        for m in held.modules() if held is not None else ():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()

    def _start_at_teacher_depth(self, t_depth: torch.Tensor) -> None:
        """--init-output: the untrained student starts at the teacher's median depth (the same on
        every rank)."""
        depth = t_depth.detach().float().median().reshape(1)
        if self.world > 1:
            torch.distributed.all_reduce(depth)
            depth /= self.world
        self.student.start_at_depth(float(depth))

    # ------------------------------------------------------------------------------ checkpoints

    def save(self, path: Path) -> None:
        """A checkpoint (distill/checkpoint.py) that is also a model file: eval, export and
        --teacher read it; --resume reads the rest."""
        if self.rank != 0:
            return
        save_checkpoint(path, self.student, self.cfg.student, self.spec.input_size, self.cfg.min_depth, self.cfg.max_depth,
                        step=self.step, config=asdict(self.cfg), rng=_rng_state(), mix_gen=self.mix_gen.get_state(),
                        teacher_spec=self.spec.to_dict(), teacher_sha256=self.teacher_sha256,
                        opt_s=self.opt_s.state_dict(), sched_s=self.sched_s.state_dict(),
                        transform=contiguous_state(self.transform.state_dict()) if self.transform is not None else None,
                        opt_t=self.opt_t.state_dict() if self.opt_t else None,
                        sched_t=self.sched_t.state_dict() if self.sched_t else None)

    def load(self, path: Path) -> None:
        ckpt = read_checkpoint(path, map_location=self.device)
        diff = config_differences(ckpt["config"], self.cfg, ignore=RESUMABLE_KEYS)
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
        self.mix_gen.set_state(ckpt["mix_gen"])
        _set_rng_state(ckpt["rng"])
        self.step = ckpt["step"]


def config_differences(saved: dict[str, Any], cfg: TrainConfig, ignore: set[str]) -> list[str]:
    """Fields in which a saved run's config differs from `cfg` (fields added since: their defaults)."""
    old = asdict(TrainConfig(**{**asdict(TrainConfig()), **saved}))
    new = asdict(cfg)
    return sorted(k for k in set(old) | set(new) if k not in ignore and old.get(k) != new.get(k))


def check_same_teacher(saved: dict[str, Any], now: str | None, cfg: TrainConfig, path: Path) -> None:
    """Refuse to reuse or continue a run distilled from other teacher files than those --teacher names
    now (same path, other content: a refitted or re-exported teacher). Runs saved before the digest was
    recorded, and code-only teachers, are not checked."""
    then = saved.get("teacher_sha256")
    if then and now and then != now:
        raise ConfigError(f"{path} was distilled from another teacher: the file behind --teacher "
                          f"{cfg.teacher.get('source')} has changed since (sha256 {then[:12]} then, {now[:12]} now); "
                          "choose a new --out (nothing was overwritten)")


def check_run_directory(cfg: TrainConfig) -> dict[str, Any] | None:
    """Refuse an --out that would lose work; returns the summary of an identical finished run
    (nothing to do), else None. Never deletes or overwrites a finished student."""
    out = Path(cfg.out)
    if not str(cfg.out).strip() or out.resolve() == Path.cwd():
        raise ConfigError("--out must name a run directory (not the current directory)")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file; give a directory")
    if (out / FINAL).exists():
        ckpt = read_checkpoint(out / FINAL)
        diff = config_differences(ckpt["config"], cfg, ignore=RUN_KEYS)
        check_same_teacher(ckpt, teacher_digest(TeacherSpec(**cfg.teacher)), cfg, out / FINAL)
        if cfg.resume and diff == ["steps"] and cfg.steps > ckpt["step"]:
            # extending a finished run: its student is kept beside the longer run's
            (out / FINAL).rename(out / f"student-step{ckpt['step']}.pt")
            return None
        if diff:
            raise FileExistsError(f"{out} holds a finished run with another config (differs in: {', '.join(diff)}); "
                                  "choose a new --out, or --resume with more --steps to extend it (nothing was "
                                  "overwritten)")
        return {"steps": ckpt["step"], "out": str(out), "already_finished": True}
    if (out / CHECKPOINT).exists() and not cfg.resume:
        raise FileExistsError(f"{out} already holds an unfinished run ({CHECKPOINT}); pass --resume to continue it, "
                              "or choose a new --out (nothing was overwritten)")
    if cfg.resume and not (out / CHECKPOINT).exists():
        raise FileNotFoundError(f"--resume: no {CHECKPOINT} in {out}")
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
    finished = check_run_directory(cfg)
    if finished is not None:
        return finished
    if not cfg.shards and not cfg.images:
        raise ConfigError("nothing to train on: give --shards DIR (simgen datasets) and/or --images DIR")
    for root in cfg.shards:  # a bad --shards or --images is reported before any model is built
        DatasetReader(root)
    image_paths = [p for source in cfg.images for p in readable_images(source)]
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
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
    if cfg.resume:
        d.load(ckpt_path)
    if d.rank == 0:
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
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
    writer = _tensorboard(out / "tb") if d.rank == 0 else None
    loader = make_loader(cfg, d.hw, image_paths)
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
                shown = {"kd": f"{logs['kd_total']:.3f}", "bn": f"{logs.get('bn', 0):.2f}"}
                shown |= {"render": f"{logs['render_depth']:.3f}"} if "render_depth" in logs else {}
                bar.set_postfix(**shown, img_s=f"{ips:.1f}")
                if writer:
                    for k, v in logs.items():
                        writer.add_scalar(f"train/{k}", v, d.step)
                    writer.add_scalar("train/images_per_s", ips, d.step)
                    writer.add_scalar("train/data_wait_share", wait / max(1e-9, wait + compute), d.step)
                    _log_images(writer, d.last_images, d.step)
            if cfg.val and d.rank == 0 and (d.step % cfg.val_every == 0 or d.step == cfg.steps):
                from distill.evaluate import evaluate_model

                metrics = evaluate_model(d.student, cfg.val, d.spec.input_size, d.device, precision=d.precision)["overall"]
                if writer:
                    for k, v in metrics.items():
                        writer.add_scalar(f"val/{k}", v, d.step)
            if d.step % cfg.ckpt_every == 0 or d.step == cfg.steps:
                d.save(ckpt_path)
    if d.rank == 0:
        d.save(out / FINAL)
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
