"""Losses, geometry and metrics (monodepth2's layers.py role). Depth tensors are B x 1 x H x W."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from simgen.options import ConfigError

EPS = 1e-6


# ---------------------------------------------------------------------------------------- KD losses


def _grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def surface_normals(depth: torch.Tensor) -> torch.Tensor:
    """Unnormalised-camera normals from depth gradients (Hu et al. 2019): n = (-dz/dx, -dz/dy, 1)."""
    dx = F.pad(depth[..., :, 1:] - depth[..., :, :-1], (0, 1, 0, 0))
    dy = F.pad(depth[..., 1:, :] - depth[..., :-1, :], (0, 0, 0, 1))
    n = torch.cat([-dx, -dy, torch.ones_like(depth)], 1)
    return n / n.norm(dim=1, keepdim=True)


def depth_kd_loss(student: torch.Tensor, teacher: torch.Tensor, w_grad: float = 1.0, w_normal: float = 1.0,
                  mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Hu et al. 2019 terms on the teacher's depth: log-L1 on depth, on its gradients, and
    1 - cos between surface normals. Both inputs positive depth."""
    ls, lt = torch.log(student.clamp_min(EPS)), torch.log(teacher.clamp_min(EPS))
    m = torch.ones_like(ls) if mask is None else mask.float()
    depth = (torch.abs(ls - lt) * m).sum() / m.sum().clamp_min(1)
    (sx, sy), (tx, ty) = _grad(ls), _grad(lt)
    grad = torch.abs(sx - tx).mean() + torch.abs(sy - ty).mean()
    normal = (1 - (surface_normals(student) * surface_normals(teacher)).sum(1)).mean()
    total = depth + w_grad * grad + w_normal * normal
    return {"total": total, "depth": depth, "grad": grad, "normal": normal}


def align_scale_shift(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Least-squares scale and shift of `pred` onto `target` per image (MiDaS); returns aligned pred."""
    b = pred.shape[0]
    p, t = pred.reshape(b, -1), target.reshape(b, -1)
    m = torch.ones_like(p) if mask is None else mask.reshape(b, -1).float()
    a00, a01, a11 = (m * p * p).sum(1), (m * p).sum(1), m.sum(1)
    b0, b1 = (m * p * t).sum(1), (m * t).sum(1)
    det = (a00 * a11 - a01 * a01).clamp_min(EPS)
    scale, shift = (a11 * b0 - a01 * b1) / det, (-a01 * b0 + a00 * b1) / det
    return pred * scale.view(b, 1, 1, 1) + shift.view(b, 1, 1, 1)


def ssi_kd_loss(student: torch.Tensor, teacher: torch.Tensor, w_grad: float = 1.0) -> dict[str, torch.Tensor]:
    """Scale-and-shift-invariant KD for teachers predicting relative depth or disparity."""
    aligned = align_scale_shift(student, teacher)
    depth = torch.abs(aligned - teacher).mean() / teacher.abs().mean().clamp_min(EPS)
    (sx, sy), (tx, ty) = _grad(aligned), _grad(teacher)
    grad = (torch.abs(sx - tx).mean() + torch.abs(sy - ty).mean()) / teacher.abs().mean().clamp_min(EPS)
    return {"total": depth + w_grad * grad, "depth": depth, "grad": grad, "normal": torch.zeros(())}


def kd_loss(output: str, student_depth: torch.Tensor, target: torch.Tensor, w_grad: float,
            w_normal: float) -> dict[str, torch.Tensor]:
    """The KD loss for a teacher of this output kind (`target` is `distill.teacher.Teacher.target`)."""
    if output == "relative":
        return ssi_kd_loss(1.0 / student_depth, target, w_grad)
    if output == "relative-depth":
        return ssi_kd_loss(student_depth, target, w_grad)
    return depth_kd_loss(student_depth, target, w_grad, w_normal)


# ------------------------------------------------------------------------------ feature hints


class FeatureTap:
    """Keeps what some modules returned in their last forward pass, in the order given, as one list
    of feature maps (an encoder's list counts as its maps), so that a loss can read the features of
    a pass that has already run."""

    def __init__(self, *modules: torch.nn.Module):
        self._outs: list[list[torch.Tensor] | None] = [None] * len(modules)
        self.handles = [m.register_forward_hook(functools.partial(self._hook, i)) for i, m in enumerate(modules)]

    def _hook(self, i: int, module, inputs, output) -> None:
        self._outs[i] = list(output) if isinstance(output, (list, tuple)) else [output]

    @property
    def out(self) -> list[torch.Tensor] | None:
        """The maps of the last forward pass; None until every tapped module has run."""
        return None if any(o is None for o in self._outs) else [t for o in self._outs for t in o]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def feature_hint_loss(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
    """FitNets' hint loss (Romero et al. 2015) on feature maps of equal shapes, level by level: the
    mean squared difference divided by the teacher's mean square (the deep levels' values are
    larger; divided, each level counts alike), averaged over the levels. In fp32; the teacher's
    side carries no gradient."""
    terms = [((s.float() - t.detach().float()) ** 2).mean() / (t.detach().float() ** 2).mean().clamp_min(EPS)
             for s, t in zip(student, teacher, strict=True)]
    return torch.stack(terms).mean()


# ------------------------------------------------------------------------------ BN statistics loss


class BNStatsHook:
    """Records the batch mean and variance at the input of a BatchNorm layer (DeepInversion).

    Statistics are computed in fp32. Under DDP, `all_reduce=True` averages the first and second
    moments over ranks, so the loss sees the global batch."""

    def __init__(self, module: torch.nn.modules.batchnorm._BatchNorm, all_reduce: bool = False):
        self.module, self.all_reduce = module, all_reduce
        self.mean: torch.Tensor | None = None
        self.var: torch.Tensor | None = None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        x = inputs[0].float()
        dims = [0] + list(range(2, x.dim()))
        m1, m2 = x.mean(dims), (x * x).mean(dims)
        if self.all_reduce and torch.distributed.is_available() and torch.distributed.is_initialized():
            world = torch.distributed.get_world_size()
            moments = torch.stack([m1, m2])
            moments = torch.distributed.nn.functional.all_reduce(moments) / world
            m1, m2 = moments[0], moments[1]
        self.mean, self.var = m1, (m2 - m1 * m1).clamp_min(0)

    def loss(self, normalized: bool = False) -> torch.Tensor:
        """||mean - running_mean|| + ||var - running_var|| (DeepInversion). `normalized` divides the
        terms by ||running_std|| and ||running_var||: every layer then counts alike, where the plain
        sum is dominated by the wide deep layers whose variances are largest."""
        rm, rv = self.module.running_mean.float(), self.module.running_var.float()
        d_mean, d_var = torch.norm(self.mean - rm, 2), torch.norm(self.var - rv, 2)
        if normalized:
            return d_mean / (torch.norm(rv.sqrt(), 2) + 1e-8) + d_var / (torch.norm(rv, 2) + 1e-8)
        return d_mean + d_var

    def remove(self) -> None:
        self.handle.remove()


class BatchNormInput(torch.nn.Module):
    """An identity placed before a batch-norm operator that is not a module (in a torch.export
    program: distill/exported.py). It carries the operator's running statistics, so that
    BNStatsHook records its input and compares it as it does for a BatchNorm layer."""

    track_running_stats = True

    def __init__(self, running_mean: torch.Tensor, running_var: torch.Tensor):
        super().__init__()
        self.register_buffer("running_mean", running_mean, persistent=False)
        self.register_buffer("running_var", running_var, persistent=False)
        self.num_features = running_mean.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def bn_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The BatchNorm layers (and BatchNormInput probes) with running statistics, in model order."""
    return [m for m in model.modules() if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, BatchNormInput))
            and m.track_running_stats and m.running_mean is not None]


# ----------------------------------------------------------------------------------------- metrics

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "a1", "a2", "a3")


def compute_depth_errors(gt: torch.Tensor, pred: torch.Tensor) -> dict[str, float]:
    """The standard metrics over 1-D tensors of valid pixels of one image (Eigen et al.)."""
    thresh = torch.maximum(gt / pred, pred / gt)
    a1, a2, a3 = [(thresh < 1.25 ** k).float().mean().item() for k in (1, 2, 3)]
    rmse = torch.sqrt(((gt - pred) ** 2).mean()).item()
    rmse_log = torch.sqrt(((torch.log(gt) - torch.log(pred)) ** 2).mean()).item()
    abs_rel = (torch.abs(gt - pred) / gt).mean().item()
    sq_rel = (((gt - pred) ** 2) / gt).mean().item()
    log10 = torch.abs(torch.log10(gt) - torch.log10(pred)).mean().item()
    return dict(abs_rel=abs_rel, sq_rel=sq_rel, rmse=rmse, rmse_log=rmse_log, log10=log10, a1=a1, a2=a2, a3=a3)


# Evaluation protocols: crop (as fractions or the Eigen pixel box on 480x640) and depth caps.
PROTOCOLS = {
    "nyu": {"min_depth": 1e-3, "max_depth": 10.0, "crop": "eigen_nyu"},
    "kitti": {"min_depth": 1e-3, "max_depth": 80.0, "crop": "garg"},
    "none": {"min_depth": 1e-3, "max_depth": float("inf"), "crop": None},
}


def eval_mask(gt: torch.Tensor, protocol: str) -> torch.Tensor:
    """Valid-pixel mask of an H x W ground truth under a protocol's caps and crop.

    NYU: Eigen crop rows 45:471, cols 41:601 of 480x640, scaled to other sizes.
    KITTI: Garg crop rows 0.40810811-0.99189189 H, cols 0.03594771-0.96405229 W."""
    p = PROTOCOLS[protocol]
    h, w = gt.shape[-2:]
    mask = (gt > p["min_depth"]) & (gt < p["max_depth"])
    crop = torch.zeros_like(mask)
    if p["crop"] == "eigen_nyu":
        crop[..., round(45 * h / 480):round(471 * h / 480), round(41 * w / 640):round(601 * w / 640)] = True
    elif p["crop"] == "garg":
        crop[..., int(0.40810811 * h):int(0.99189189 * h), int(0.03594771 * w):int(0.96405229 * w)] = True
    else:
        crop[...] = True
    return mask & crop


ALIGNMENTS = ("none", "median", "scale-shift", "scale-shift-inverse")


def align_prediction(pred: torch.Tensor, gt: torch.Tensor, mode: str) -> torch.Tensor:
    """none | median (scale by median ratio) | scale-shift (least squares) | scale-shift-inverse (least
    squares on inverse depth, as MiDaS is evaluated, then inverted) on 1-D valid pixels."""
    if mode == "none":
        return pred
    if mode == "median":
        return pred * (gt.median() / pred.median().clamp_min(EPS))
    if mode == "scale-shift":
        return align_scale_shift(pred.view(1, 1, 1, -1), gt.view(1, 1, 1, -1)).view(-1)
    if mode == "scale-shift-inverse":
        inverse = align_scale_shift(1.0 / pred.clamp_min(EPS).view(1, 1, 1, -1), 1.0 / gt.view(1, 1, 1, -1)).view(-1)
        return 1.0 / inverse.clamp_min(1.0 / gt.max())  # an aligned inverse below the frame's farthest is capped there
    raise ConfigError(f"unknown alignment {mode!r}; choose {', '.join(ALIGNMENTS)}")
