#!/usr/bin/env python
"""What the teacher's BatchNorm statistics say about each kind of input, layer by layer.

    python scripts/diagnose_transform.py --teacher out/experiment/teacher.ckpt --sims out/experiment/sims \
        [--real ../shared/data/rgbd-indoor] [--run out/experiment/run-f] [--out out/diagnose]

For one batch each of: real images of the teacher's domain (if --real), raw simulated images,
mixed simulated images, and simulated images through the transformation network T of a run (if
--run), prints the BN loss the method minimises (||mean - running_mean|| + ||var - running_var||)
per layer, the same normalised by the running statistics' norms (comparable across layers), and
the teacher's depth on each input (median, and AbsRel against the renderer's depth for sims).
Writes OUT/diagnose.png: raw | mixed | T(raw) | teacher on raw | teacher on T(raw).
"""

from __future__ import annotations

import distill  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from distill.checkpoint import read_checkpoint
from distill.data import RGBDFolder, ShardStream, resize_crop
from distill.layers import BNStatsHook, compute_depth_errors
from distill.mixing import MixConfig, mix_objects
from distill.networks.transform import TransformNet
from distill.teacher import TeacherSpec, load_teacher, require_batchnorm
from simgen.options import parse_size
from simgen.preview import colorize_depth


def first_batch(stream, n: int) -> dict[str, torch.Tensor]:
    items = []
    for item in stream:
        items.append(item)
        if len(items) == n:
            break
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def bn_report(teacher, hooks, rgb: torch.Tensor) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Per-layer raw BN loss and normalised BN loss, and the teacher's depth."""
    with torch.no_grad():
        depth = teacher.target(rgb)
    raw = [h.loss().item() for h in hooks]
    norm = [h.loss(normalized=True).item() for h in hooks]
    return np.array(raw), np.array(norm), depth


def abs_rel(gt: torch.Tensor, pred: torch.Tensor) -> float:
    m = (gt > 1e-3) & (gt < 10)  # the NYU caps, no crop (sims have no sensor border)
    return compute_depth_errors(gt[m], pred[m])["abs_rel"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--sims", required=True)
    ap.add_argument("--real", help="an RGB-D folder of the teacher's domain (its split=train is used)")
    ap.add_argument("--run", help="a distill run folder whose checkpoint.pt holds a trained T")
    ap.add_argument("--size", type=parse_size, default=parse_size("128x96"), help="teacher input WIDTHxHEIGHT")
    ap.add_argument("--n", type=int, default=32, help="images per batch")
    ap.add_argument("--out", default="out/diagnose")
    args = ap.parse_args()
    torch.manual_seed(0)
    teacher = load_teacher(TeacherSpec(source=args.teacher, input_size=args.size))
    hw = teacher.spec.input_size.hw
    hooks = [BNStatsHook(m) for m in require_batchnorm(teacher)]

    sims = first_batch(ShardStream([args.sims], hw, seed=0, buffer=64, augment=True), args.n)
    mixed = mix_objects(sims["rgb"], sims["depth"], sims["inst"], MixConfig(), torch.Generator().manual_seed(0))
    inputs = {"raw sims": (sims["rgb"], sims["depth"]), "mixed sims": (mixed[0], mixed[1])}
    if args.run:
        ckpt = read_checkpoint(Path(args.run) / "checkpoint.pt")
        if ckpt.get("transform") is None:
            raise SystemExit(f"{args.run}: this run has no transformation network")
        t = TransformNet()
        t.load_state_dict(ckpt["transform"])
        with torch.no_grad():
            inputs["T(raw sims)"] = (t.eval()(sims["rgb"]).clamp(0, 1), sims["depth"])
            inputs["T(mixed sims)"] = (t(mixed[0]).clamp(0, 1), mixed[1])
    if args.real:
        ds = RGBDFolder(args.real, 1000.0, "train")
        idx = np.random.default_rng(0).choice(len(ds), args.n, replace=False)
        items = [resize_crop({"rgb": ds[int(i)]["rgb"], "depth": ds[int(i)]["depth"]}, hw, None) for i in idx]
        inputs = {"real (teacher's train split)": (torch.stack([it["rgb"] for it in items]),
                                                   torch.stack([it["depth"] for it in items])), **inputs}

    table, depths = {}, {}
    for name, (rgb, gt) in inputs.items():
        raw, norm, depth = bn_report(teacher, hooks, rgb)
        depths[name] = depth
        table[name] = {"bn_sum": float(raw.sum()), "bn_norm_sum": float(norm.sum()), "bn_per_layer": raw.round(3).tolist(),
                       "bn_norm_per_layer": norm.round(3).tolist(), "teacher_median_m": float(depth.median()),
                       "teacher_abs_rel_vs_gt": abs_rel(gt, depth), "pixel_mean": rgb.mean((0, 2, 3)).tolist(),
                       "pixel_std": rgb.std((0, 2, 3)).tolist(),
                       "content_l1_to_raw": float((rgb - sims["rgb"]).abs().mean()) if "sims" in name else None}

    names = list(table)
    print(f"{'input':30s} {'BN sum':>9s} {'BN norm.':>9s} {'teacher med m':>13s} {'AbsRel vs gt':>12s}  pixel mean")
    for n in names:
        r = table[n]
        print(f"{n:30s} {r['bn_sum']:9.1f} {r['bn_norm_sum']:9.2f} {r['teacher_median_m']:13.2f} "
              f"{r['teacher_abs_rel_vs_gt']:12.3f}  {np.round(r['pixel_mean'], 3).tolist()}")
    print("\nper layer: raw BN loss | normalised")
    print("layer  C     " + "  ".join(f"{n[:16]:>16s}" for n in names))
    for k, h in enumerate(hooks):
        print(f"{k:5d} {h.module.num_features:4d}  " + "  ".join(
            f"{table[n]['bn_per_layer'][k]:8.2f}|{table[n]['bn_norm_per_layer'][k]:6.2f}" for n in names))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "diagnose.json").write_text(json.dumps(table, indent=1))
    show = [n for n in ("raw sims", "mixed sims", "T(raw sims)") if n in inputs]
    rows = []
    for i in range(min(6, args.n)):
        tiles = [(inputs[n][0][i].permute(1, 2, 0).numpy() * 255).astype(np.uint8) for n in show]
        tiles += [colorize_depth(depths[n][i, 0].numpy(), 0.5, 8.0) for n in ("raw sims", "T(raw sims)") if n in depths]
        rows.append(np.concatenate(tiles, 1))
    Image.fromarray(np.concatenate(rows, 0)).save(out / "diagnose.png")
    print(f"\nwrote {out / 'diagnose.png'} ({' | '.join(show)} | teacher depth on raw{' | on T(raw)' if args.run else ''})")


if __name__ == "__main__":
    main()
