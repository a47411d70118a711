"""`distill gap`: how far a set of simulated images is from what the teacher knows, before
anything is trained.

For each input set (real frames of the teacher's domain with --real; raw sims; object-wise mixed
sims; sims through a run's transformation network with --run), on the same n images each:
  * the teacher's BatchNorm distance: per layer ||mean - running_mean|| / ||running_std|| +
    ||var - running_var|| / ||running_var|| (every layer counts alike; `BNStatsHook.loss`), and
    its sum, the quantity `--bn-loss normalized` trains T on;
  * the teacher's depth error against the set's own depth (render depth for sims, sensor depth for
    real frames): AbsRel and delta1, with no alignment and median-scaled (a relative teacher is
    aligned by least-squares scale and shift instead, and has no unaligned figure);
  * image statistics: mean and contrast per channel, and a noise estimate (simgen/imagestats.py);
  * a picture: a few images of each set with the teacher's depth and the set's depth.
Low BN distance and low AbsRel mean the teacher reads these images as it reads its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from distill.data import first_samples
from distill.layers import BNStatsHook, align_scale_shift, compute_depth_errors
from distill.teacher import Teacher, TeacherError, TeacherSpec, load_teacher, require_batchnorm
from simgen.imagestats import channel_stats, noise_sigma

MAX_DEPTH_M = 10.0   # pixels beyond (or at 0: no reading) are not scored, as the NYU protocol caps
PICTURE_SAMPLES = 4  # images per set in the picture
DEPTH_SHOWN_M = (0.3, 8.0)  # colour range of a picture's depth tile whose image has no valid depth


def real_batch(root: str, hw: tuple[int, int], n: int, split: str | None, depth_scale: float) -> dict[str, torch.Tensor]:
    """n frames of an RGB-D folder (a seeded random choice over the split), centre-cropped to hw."""
    from distill.data import RGBDFolder

    ds = RGBDFolder(root, depth_scale, split, hw)
    picks = np.random.default_rng(0).choice(len(ds), min(n, len(ds)), replace=False)
    items = [ds[int(i)] for i in sorted(picks)]
    return {k: torch.stack([it[k] for it in items]) for k in ("rgb", "depth")}


def metric_depth(teacher: Teacher, out: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The teacher's output as depth in metres; a relative one aligned (scale and shift per image)
    to the ground truth in its own space first."""
    if teacher.spec.output == "relative":
        inverse = align_scale_shift(out, 1.0 / gt.clamp_min(1e-3), valid)
        return 1.0 / inverse.clamp_min(1.0 / MAX_DEPTH_M / 10)
    if teacher.spec.output == "relative-depth":
        return align_scale_shift(out, gt, valid).clamp_min(1e-3)
    return out


def depth_errors(teacher: Teacher, out: torch.Tensor, gt: torch.Tensor) -> dict[str, dict[str, float] | None]:
    """AbsRel and delta1 averaged over images: unaligned (None for a relative teacher) and median-scaled."""
    valid = (gt > 1e-3) & (gt < MAX_DEPTH_M)
    depth = metric_depth(teacher, out, gt, valid)
    result: dict[str, dict[str, float] | None] = {}
    for align in ("none", "median"):
        if align == "none" and teacher.relative:
            result[align] = None
            continue
        per_image = []
        for d, g, m in zip(depth, gt, valid):
            if m.sum() < 10:
                continue
            p, g = d[m], g[m]
            if align == "median":
                p = p * (g.median() / p.median().clamp_min(1e-6))
            per_image.append(compute_depth_errors(g, p.clamp_min(1e-3)))
        result[align] = {k: float(np.mean([e[k] for e in per_image])) if per_image else float("nan")
                         for k in ("abs_rel", "a1")}
    return result


def measure(teacher: Teacher, hooks: list[BNStatsHook], rgb: torch.Tensor, gt: torch.Tensor) -> dict[str, Any]:
    """Everything `distill gap` reports for one input set; `depth` is the teacher's (kept for the picture)."""
    with torch.no_grad():
        out = teacher.target(rgb)
    per_layer = [h.loss(normalized=True).item() for h in hooks]
    images = (rgb.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    return {"n": len(rgb), "bn_distance": float(sum(per_layer)) if hooks else None,
            "bn_per_layer": [round(v, 4) for v in per_layer],
            "depth": depth_errors(teacher, out.cpu(), gt.cpu()),
            **channel_stats(images), "noise_sigma": float(np.mean([noise_sigma(im) for im in images])),
            "_teacher_depth": metric_depth(teacher, out.cpu(), gt.cpu(), (gt > 1e-3) & (gt < MAX_DEPTH_M))}


def load_transform(run: str | Path):
    """The transformation network of a run (its directory, checkpoint.pt or student.pt)."""
    from distill.checkpoint import read_checkpoint
    from distill.networks.transform import build_transform
    from distill.config import drop_retired
    from distill.train import CHECKPOINT, FINAL

    path = Path(run)
    if path.is_dir():
        path = path / FINAL if (path / FINAL).exists() else path / CHECKPOINT
    ckpt = read_checkpoint(path)
    if ckpt.get("transform") is None:
        raise TeacherError(f"--run {run}: this run has no transformation network (trained with --transform off?)")
    drop_retired(ckpt.get("config") or {}, f"--run {run}")  # a retired T design is refused by name
    net = build_transform()
    net.load_state_dict(ckpt["transform"])
    return net.eval()


def gap(spec: TeacherSpec, shards: str, real: str | None = None, real_split: str | None = "train",
        depth_scale: float = 1000.0, run: str | None = None, n: int = 64, seed: int = 0,
        device: str | torch.device = "cpu") -> dict[str, Any]:
    """The report of `distill gap`: {"teacher": ..., "bn_problem": ..., "sets": {name: measure(...)}}."""
    from distill.mixing import MixConfig, mix_objects

    teacher = load_teacher(spec, device)
    hw = teacher.spec.input_size.hw
    try:
        hooks, bn_problem = [BNStatsHook(m) for m in require_batchnorm(teacher)], None
    except TeacherError as e:
        hooks, bn_problem = [], str(e)
    sims = first_samples(shards, hw, n)
    rgb, depth, _, _ = mix_objects(sims["rgb"], sims["depth"], sims["inst"], MixConfig(),
                                   torch.Generator().manual_seed(seed))
    sets = {"raw sims": (sims["rgb"], sims["depth"]), "mixed sims": (rgb, depth)}
    if run:
        with torch.no_grad():
            sets["T(raw sims)"] = (load_transform(run)(sims["rgb"]).clamp(0, 1), sims["depth"])
    if real:
        frames = real_batch(real, hw, n, real_split, depth_scale)
        sets = {"real": (frames["rgb"], frames["depth"]), **sets}
    report = {name: measure(teacher, hooks, x.to(device), gt.to(device)) for name, (x, gt) in sets.items()}
    for name, (x, gt) in sets.items():
        report[name]["_rgb"], report[name]["_gt"] = x, gt
    return {"teacher": str(spec.source), "input_size": str(teacher.spec.input_size), "output": teacher.spec.output,
            "bn_problem": bn_problem, "bn_layers": len(hooks), "sets": report}


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def format_gap(report: dict[str, Any]) -> str:
    lines = [f"teacher {report['teacher']} at {report['input_size']}, output {report['output']}, "
             f"{report['bn_layers']} BN layers" + (f" (BN distance n/a: {report['bn_problem']})"
                                                  if report["bn_problem"] else ""),
             f"{'set':14s} {'n':>4s} {'BN dist':>8s} {'AbsRel':>7s} {'d1':>6s} {'AbsRel med':>10s} {'d1 med':>6s} "
             f"{'noise':>6s}  mean RGB / contrast RGB"]
    for name, r in report["sets"].items():
        raw, med = r["depth"]["none"] or {}, r["depth"]["median"]
        lines.append(f"{name:14s} {r['n']:4d} {_fmt(r['bn_distance'], '.2f'):>8s} {_fmt(raw.get('abs_rel')):>7s} "
                     f"{_fmt(raw.get('a1')):>6s} {_fmt(med['abs_rel']):>10s} {_fmt(med['a1']):>6s} "
                     f"{r['noise_sigma']:6.2f}  {r['mean']} / {r['contrast']}")
    if report["bn_layers"]:
        names = list(report["sets"])
        lines.append("\nnormalised BN distance per layer (first layers first)")
        lines.append("layer " + " ".join(f"{n[:12]:>12s}" for n in names))
        for k in range(report["bn_layers"]):
            lines.append(f"{k:5d} " + " ".join(f"{report['sets'][n]['bn_per_layer'][k]:12.3f}" for n in names))
    lines.append("BN dist: sum over layers of the normalised distance to the teacher's running statistics; AbsRel/d1 "
                 "against each set's depth (render depth for sims), unaligned and median-scaled; noise: Immerkaer "
                 "sigma in grey levels at the teacher's input size")
    return "\n".join(lines)


def gap_picture(report: dict[str, Any], path: str | Path) -> None:
    """One row per set: PICTURE_SAMPLES images spread over the set, each as image | teacher depth |
    the set's depth (both depths in the colours of the set's depth range for that image)."""
    from simgen.preview import colorize_depth

    rows = []
    for r in report["sets"].values():
        tiles = []
        for i in np.linspace(0, r["n"] - 1, min(PICTURE_SAMPLES, r["n"])).round().astype(int):
            rgb = (r["_rgb"][i].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
            gt = r["_gt"][i, 0].cpu().numpy()
            valid = gt[(gt > 1e-3) & (gt < MAX_DEPTH_M)]
            lo, hi = np.percentile(valid, (2, 98)) if valid.size else DEPTH_SHOWN_M
            tiles += [rgb, colorize_depth(r["_teacher_depth"][i, 0].numpy(), lo, hi), colorize_depth(gt, lo, hi)]
        rows.append(np.concatenate(tiles, 1))
    width = max(row.shape[1] for row in rows)
    rows = [np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0))) for row in rows]
    Image.fromarray(np.concatenate(rows, 0)).save(path)


def public(report: dict[str, Any]) -> dict[str, Any]:
    """The report without its tensors (for JSON)."""
    return {**report, "sets": {name: {k: v for k, v in r.items() if not k.startswith("_")}
                               for name, r in report["sets"].items()}}
