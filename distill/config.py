"""TrainConfig: every option of a distillation run, with its one default. `distill train` builds its
flags from these fields (simgen/options.py); OUT/config.json holds them, `--config` reads them back,
and the experiment's rows are files of overrides of them (experiments/)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from distill.mixing import MixConfig
from distill.networks import ARCHITECTURES
from distill.runtime import PRECISIONS
from distill.teacher import TeacherSpec
from simgen import runs
from simgen.store import is_url
from simgen.options import ConfigError, auto_on_off, check_fields, field_names, option

INIT_STUDENT = ("random", "teacher")  # where the student's weights start (--init-student)
STUDENT_BN = ("batch", "teacher")     # what the student's BatchNorm layers normalise with (--student-bn)
# what may differ between a run and its --resume (everything else must match)
RESUMABLE_KEYS = {"steps", "resume", "log_every", "ckpt_every", "workers", "device", "val", "val_every",
                  "precision", "channels_last", "skip_corrupt", "out"}
# how a run was executed, not what it computes: a finished run counts as the same run across these
RUN_KEYS = (RESUMABLE_KEYS - {"steps"}) | {"out"}

# Levers that measured no gain (docs/tries.md), each with the value at which it did nothing. A saved
# config or checkpoint that holds that value still loads (it is the same run without the field); any
# other value is refused, naming the commit at which tries v1-v57 still run.
RETIRED_AT = "50575b2"
RETIRED = {"transform_net": "residual", "transform_steps": 1, "transform_until": 0, "transform_share": 1.0,
           "bn_layers": "all", "w_tv": 0.0, "w_render_depth": 0.0, "hint_levels": "encoder", "init_output": False,
           "refresh_kd_target": False, "w_adv": 0.0}
RETIRED_MIX = {"depth_aware": False}
RETIRED_VALUES = {"student_bn": ("encoder",)}


def _retired_error(where: str, name: str, value: Any) -> ConfigError:
    return ConfigError(f"{where}: {name} = {value!r} was retired (it measured no gain, docs/tries.md); "
                       f"check out commit {RETIRED_AT} to run it")


def drop_retired(saved: dict[str, Any], where: str) -> dict[str, Any]:
    """A saved TrainConfig dict without the retired fields; ConfigError if one of them (or a retired value
    of a field still here) would change the run."""
    kept = {k: v for k, v in saved.items() if k not in RETIRED}
    for name, off in RETIRED.items():
        if name in saved and saved[name] != off:
            raise _retired_error(where, name, saved[name])
    for name, values in RETIRED_VALUES.items():
        if saved.get(name) in values:
            raise _retired_error(where, name, saved[name])
    if isinstance(saved.get("mix"), dict):
        for name, off in RETIRED_MIX.items():
            if saved["mix"].get(name, off) != off:
                raise _retired_error(where, f"mix.{name}", saved["mix"][name])
        kept["mix"] = {k: v for k, v in saved["mix"].items() if k not in RETIRED_MIX}
    return kept


@dataclass
class TrainConfig:
    """Every option of a distillation run, with its one default (docs/distill.md explains each)."""

    shards: list[str] = option([], "simgen dataset or URL (repeatable)", repeat=True, metavar="DIR|URL")
    images: list[str] = option([], "folder or .txt list of photos (repeatable)",
                               repeat=True, metavar="DIR")
    images_share: float = option(0.5, "share of each batch from --images", low=0, high=1)
    out: str = option("runs/distill", "run directory")
    teacher: dict[str, Any] = option({}, "TeacherSpec fields (flags --teacher, --teacher-*)", cli=False)
    student: str = option("mobilenetv2", "student architecture", choices=ARCHITECTURES)
    student_imagenet: str | None = option(None, "ImageNet weights file for the encoder", parse=str)
    init_student: str = option("random", "start from random or the teacher's weights",
                               choices=INIT_STUDENT)
    student_bn: str = option("batch", "student BN statistics: batch or teacher's", choices=STUDENT_BN)
    min_depth: float = option(0.1, "smallest depth the student outputs (m)", positive=True)
    max_depth: float = option(10.0, "largest depth the student outputs (m)", positive=True)
    steps: int = option(2000, "student updates", low=1)
    batch_size: int = option(8, "images per step (per process under torchrun)", low=1)
    lr: float = option(1e-3, "student learning rate (AdamW, cosine)", positive=True)
    # T's learning rate and BN term: the measured better form (docs/distill.md, step 3); the paper's
    # form is --bn-loss sum --lr-transform 1e-4
    lr_transform: float = option(1e-3, "learning rate of the transformation network", expert=True, positive=True)
    weight_decay: float = option(1e-4, "AdamW weight decay of the student", expert=True, low=0)
    warmup: int = option(100, "steps of linear learning-rate warm-up", expert=True, low=0)
    clip: float = option(1.0, "gradient norm clip", expert=True, positive=True)
    mixing: bool = option(True, "object-wise mixing")
    mix: dict[str, Any] = option(lambda: asdict(MixConfig()), "MixConfig fields (flags --mix-*)", cli=False)
    transform: str = option("auto", "transformation network T: auto, on or off", parse=auto_on_off)
    w_bn: float = option(1.0, "weight of T's BatchNorm-statistics loss", expert=True, low=0)
    bn_loss: str = option("normalized", "T's BN term: per-layer normalised, or sum",
                          choices=("normalized", "sum"), expert=True)
    w_content: float = option(10.0, "weight of T's content loss (L1 to its input)", expert=True, low=0)
    w_grad: float = option(1.0, "weight of the depth-gradient term of the KD loss", expert=True, low=0)
    w_normal: float = option(1.0, "weight of the surface-normal term of the KD loss", expert=True, low=0)
    w_feature: float = option(0.0, "weight of encoder feature hints (0: off)", low=0)
    seed: int = option(0, "seed of weights, data order and mixing")
    workers: int = option(2, "DataLoader worker processes", low=0)
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    precision: str = option("auto", "auto: bf16 where native, else fp32", choices=PRECISIONS)
    channels_last: bool = option(True, "NHWC memory layout (faster on CPUs and GPUs)")
    log_every: int = option(20, "steps between log lines and TensorBoard points", low=1)
    ckpt_every: int = option(500, "steps between checkpoints", low=1)
    val: str | None = option(None, "RGB-D folder evaluated every --val-every steps", parse=str)
    val_every: int = option(500, "steps between validations", low=1)
    resume: bool = option(False, "continue the run in --out")
    skip_corrupt: bool = option(False, "skip unreadable shards instead of stopping")

    def __post_init__(self) -> None:
        self.shards = [s if is_url(s) else str(Path(s).resolve()) for s in self.shards]  # URLs: object stores
        self.images = [str(Path(s).resolve()) for s in self.images]
        known = field_names(TeacherSpec)  # a version-1 run's spec may carry keys since removed
        self.teacher = TeacherSpec(**{k: v for k, v in self.teacher.items() if k in known}).to_dict()
        self.mix = asdict(MixConfig(**self.mix))
        try:
            self.transform = auto_on_off(self.transform)
        except ConfigError as e:
            raise ConfigError(f"--transform {e}") from None
        check_fields(self)
        self._check_data_mix()
        if self.init_student == "teacher" and self.student_imagenet:
            raise ConfigError("--init-student teacher sets every weight of the student from the teacher; leave out "
                              "--student-imagenet")
        if self.student_bn != "batch" and self.init_student != "teacher":
            raise ConfigError(f"--student-bn {self.student_bn} keeps the BatchNorm statistics the student starts "
                              "with; only --init-student teacher starts it with the teacher's (a random student's are "
                              "0 and 1)")
        if not 0 < self.min_depth < self.max_depth:
            raise ConfigError(f"need 0 < --min-depth < --max-depth, got {self.min_depth} and {self.max_depth}")

    def _check_data_mix(self) -> None:
        if self.shards and self.images and not 0 < self.images_share < 1:
            raise ConfigError(f"--images-share must be between 0 and 1 when --shards and --images are both given, "
                              f"got {self.images_share}")
        if self.shards and self.images and self.image_count() in (0, self.batch_size):
            raise ConfigError(f"--images-share {self.images_share} of --batch-size {self.batch_size} leaves "
                              f"{self.image_count()} image(s) per batch; choose a share that mixes both")

    def image_count(self) -> int:
        """Samples per batch taken from --images."""
        if not self.images:
            return 0
        return self.batch_size if not self.shards else round(self.images_share * self.batch_size)

    @classmethod
    def from_saved(cls, saved: dict[str, Any], where: str) -> TrainConfig:
        """The config a run saved (config.json, a checkpoint, a --config file), fields added since at their
        defaults; ConfigError naming `where` for a retired lever that was on."""
        return cls(**{**asdict(cls()), **drop_retired(saved, where)})


def config_differences(saved: dict[str, Any], cfg: TrainConfig, ignore: set[str], where: str = "run") -> list[str]:
    """Fields in which a saved run's config differs from `cfg` (fields added since: their defaults)."""
    return runs.config_differences(saved, cfg, ignore, rebuild=lambda d: TrainConfig.from_saved(d, where))
