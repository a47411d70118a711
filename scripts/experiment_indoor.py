#!/usr/bin/env python
"""The paper's experiment on real indoor RGB-D data: one command for the whole table.

    python scripts/experiment_indoor.py --data ../shared/data/rgbd-indoor [--profile cpu|gpu|smoke] [--out out/experiment]

The data folder is research data: it is read in place, never copied into the project; derived
files (a shard copy of the real train split for row b, noise images for row h) go under --out.

Rows (every student: MobileNetV2, same steps, batch and schedule):
  teacher  ResNet-18 fitted on split=train with ground truth (`distill fit-teacher`)
  a  supervised on the real train split (reference)
  b  KD with the real train images (the paper's baseline)
  c  KD with raw simulated images                      (--mixing off --transform off), seeds 0, 1
  d  c + object-wise mixing
  e  c + transformation network
  f  c + both (the method)                             seeds 0, 1
  g  f with one sixth of the simulated images
  h  KD with images that carry no scene (shuffled 8x8 patches of the simulated images): the floor
Each is evaluated on split=test per scene and overall (AbsRel, RMSE, delta1) with no alignment and
with median alignment, plus parameters, MACs and CPU latency. Writes OUT/results.md (copy it to
docs/results.md), OUT/results.json and OUT/grid-*.png (the same test images for every model).
Finished steps are skipped when the command is run again. `--variants` adds rows v1.. (VARIANTS):
changes to row f that the method leaves open. `--rows f,v4` runs only those rows (and the teacher).
"""

from __future__ import annotations

import distill  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)

import argparse
import json
import subprocess
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from distill.data import RGBDFolder
from distill.evaluate import evaluate_model, load_model_for_eval
from distill.fit_teacher import FitConfig, fit_teacher
from distill.mixing import MixConfig
from distill.networks import count_macs, count_params
from distill.train import TrainConfig, train
from simgen import shards
from simgen.config import RenderConfig
from simgen.runner import render


@dataclass
class Profile:
    size: tuple[int, int]
    n_sim: int
    teacher_steps: int
    steps: int
    batch: int


# Tries of what the method leaves open, each a change to row f (seed 0); run with --variants.
VARIANTS = {
    "v1 f, BN loss normalised per layer": dict(bn_loss="normalized"),
    "v2 f, BN normalised + lr_T 1e-3 (seed 0)": dict(bn_loss="normalized", lr_transform=1e-3),
    "v2 f, BN normalised + lr_T 1e-3 (seed 1)": dict(bn_loss="normalized", lr_transform=1e-3, seed=1),
    "v3 f, depth-aware mixing": dict(mix=asdict(MixConfig(depth_aware=True))),
    # the paper's step: T and the teacher run again after T's update for the student's target (the
    # default reuses T's own pass); measured to change nothing at this scale (docs/distill.md)
    "v4 f, KD target refreshed after T's update (seed 0)": dict(refresh_kd_target=True),
    "v4 f, KD target refreshed after T's update (seed 1)": dict(refresh_kd_target=True, seed=1),
}

PROFILES = {
    "smoke": Profile((32, 64), 12, 4, 4, 4),          # minutes: checks the pipeline, numbers mean nothing
    "cpu": Profile((96, 128), 600, 1500, 400, 8),     # 103 minutes on 2 cores (docs/results.md)
    "gpu": Profile((224, 320), 6000, 8000, 4000, 16),
}


def real_train_as_shards(data: Path, out: Path) -> Path:
    """The real train split in the shard format (depth kept; no instances), for KD row b."""
    if (out / shards.MANIFEST).exists():
        return out
    ds = RGBDFolder(data, 1000.0, "train")
    per = 64
    records = {}
    for k in range(0, len(ds), per):
        samples = []
        for i in range(k, min(len(ds), k + per)):
            it = ds[i]
            rgb = (it["rgb"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            depth = it["depth"][0].numpy()
            samples.append(shards.Sample(i, rgb, depth, np.zeros(depth.shape, np.uint16),
                                         {"index": i, "instances": [], "scene_family": it["scene"]}))
        rec = shards.write_shard(out / shards.SHARD_DIR / shards.shard_name(k // per), samples, 1000.0)
        records[rec["name"]] = rec
    shards.save_manifest(out, {"format": shards.FORMAT_NAME, "version": 1, "n": len(ds), "samples_per_shard": per,
                               "config": {"source": str(data), "split": "train"}, "seed": 0,
                               "depth": {"scale": 1000.0, "max_m": 10.0}, "shards": records})
    return out


def patch_shuffled(src: Path, out: Path, patch: int = 8, seed: int = 0) -> Path:
    """Images with no scene: every image's 8x8 patches shuffled (colour statistics kept)."""
    if (out / shards.MANIFEST).exists():
        return out
    rng = np.random.default_rng(seed)
    source = shards.Dataset(src)
    records = {}
    for k, rec in enumerate(source.shards):
        samples = []
        for s in shards.iter_shard(source.shard_path(rec), source.depth_scale):
            h, w = (s.rgb.shape[0] // patch) * patch, (s.rgb.shape[1] // patch) * patch
            tiles = s.rgb[:h, :w].reshape(h // patch, patch, w // patch, patch, 3).swapaxes(1, 2).reshape(-1, patch, patch, 3)
            tiles = tiles[rng.permutation(len(tiles))]
            rgb = tiles.reshape(h // patch, w // patch, patch, patch, 3).swapaxes(1, 2).reshape(h, w, 3)
            samples.append(shards.Sample(s.index, np.ascontiguousarray(rgb), s.depth[:h, :w],
                                         np.zeros((h, w), np.uint16), {"index": s.index, "instances": []}))
        r = shards.write_shard(out / shards.SHARD_DIR / shards.shard_name(k), samples, source.depth_scale)
        records[r["name"]] = r
    shards.save_manifest(out, dict(source.manifest, shards=records, config={"derived_from": str(src)}))
    return out


def cpu_latency_ms(model: torch.nn.Module, size: tuple[int, int], repeats: int = 20) -> float:
    model = model.eval().cpu()
    x = torch.rand(1, 3, *size)
    times = []
    with torch.no_grad():
        for _ in range(repeats + 3):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return float(np.median(times[3:]) * 1000)


def prediction_figure(models: dict[str, Path], data: Path, size: tuple[int, int], path: Path, per_scene: int = 2) -> list[str]:
    """Depth predicted by every model on the same test frames (rows), one column per model.

    Predictions only: the frames and their ground truth belong to the data set, which stays out of
    the project (the names are returned; `grid-*.png` under --out show RGB and ground truth).
    Each row's colours span the teacher's 2nd-98th percentile, near bright, far dark."""
    from PIL import ImageDraw

    from distill.evaluate import predict
    from simgen.preview import colorize_depth

    ds = RGBDFolder(data, 1000.0, "test")
    scenes = sorted({ds.items[i]["scene"] for i in range(len(ds))})
    picks = []
    for sc in scenes:
        idx = [i for i in range(len(ds)) if ds.items[i]["scene"] == sc]
        picks += [idx[int(k)] for k in np.linspace(0, len(idx) - 1, per_scene + 2)[1:-1].round()]
    loaded = {name: load_model_for_eval(str(p), torch.device("cpu"))[0] for name, p in models.items()}
    tile_h, tile_w, head = 120, 160, 16
    canvas = Image.new("RGB", (tile_w * len(loaded), head + tile_h * len(picks)), "white")
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(loaded):
        draw.text((c * tile_w + 4, 2), name.split(",")[0][:24], fill="black")
    for r, i in enumerate(picks):
        rgb = ds[i]["rgb"][None]
        preds = {name: predict(m, rgb, size)[0, 0].numpy() for name, m in loaded.items()}
        lo, hi = np.percentile(next(iter(preds.values())), [2, 98])
        for c, pred in enumerate(preds.values()):
            tile = Image.fromarray(colorize_depth(np.clip(pred, lo, hi), lo, hi)).resize((tile_w, tile_h))
            canvas.paste(tile, (c * tile_w, head + r * tile_h))
    canvas.save(path)
    return [f"{ds.items[i]['scene']}/{ds.items[i]['name']}" for i in picks]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="the rgbd-indoor folder (index.csv with train/test)")
    ap.add_argument("--out", default="out/experiment")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    ap.add_argument("--variants", action="store_true", help="also run the variants of row f (VARIANTS)")
    ap.add_argument("--rows", help="comma-separated row keys to run (e.g. f,v4); default: all rows")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    p, out, data = PROFILES[args.profile], Path(args.out), Path(args.data).resolve()
    show = not args.quiet
    t_start = time.time()
    res = (320, 240) if args.profile != "smoke" else (64, 48)

    print("== teacher", flush=True)
    teacher = out / "teacher.ckpt"
    if not teacher.exists():
        fit_teacher(FitConfig(data=str(data), out=str(teacher), arch="resnet18", input_size=p.size, split="train",
                              steps=p.teacher_steps, batch_size=p.batch, lr=2e-3, workers=2), show_progress=show)

    print("== data", flush=True)
    sims = out / "sims"
    render(sims, RenderConfig(scene="indoor", resolution=res, samples_per_shard=64 if args.profile != "smoke" else 4),
           seed=0, n=p.n_sim, show_progress=show)
    sims_sixth = out / "sims-sixth"
    render(sims_sixth, RenderConfig(scene="indoor", resolution=res, samples_per_shard=64 if args.profile != "smoke" else 4),
           seed=0, n=max(2, p.n_sim // 6), show_progress=show)
    real = real_train_as_shards(data, out / "real-train-shards")
    noise = patch_shuffled(sims, out / "no-scene")

    base = TrainConfig(out="", teacher={"source": str(teacher), "input_size": p.size}, steps=p.steps,
                       batch_size=p.batch, workers=2, log_every=20, ckpt_every=100, warmup=max(1, p.steps // 20))
    off = {"mixing": False, "transform": False}
    rows: dict[str, dict] = {
        "b KD, real train images": dict(shards=[str(real)], **off),
        "c KD, raw sims (seed 0)": dict(shards=[str(sims)], **off),
        "c KD, raw sims (seed 1)": dict(shards=[str(sims)], seed=1, **off),
        "d c + mixing": dict(shards=[str(sims)], mixing=True, transform=False),
        "e c + transformation": dict(shards=[str(sims)], mixing=False, transform=True),
        "f c + both (seed 0)": dict(shards=[str(sims)], mixing=True, transform=True),
        "f c + both (seed 1)": dict(shards=[str(sims)], mixing=True, transform=True, seed=1),
        "g f, 1/6 of the sims": dict(shards=[str(sims_sixth)], mixing=True, transform=True),
        "h KD, no-scene images": dict(shards=[str(noise)], **off),
    }
    if args.variants:
        rows.update({name: dict(shards=[str(sims)], mixing=True, transform=True, **kw) for name, kw in VARIANTS.items()})
    wanted = set(args.rows.split(",")) if args.rows else None
    if wanted:
        unknown = wanted - {"a"} - {name.split(" ")[0] for name in rows}
        if unknown:
            ap.error(f"--rows: unknown row keys {', '.join(sorted(unknown))}")
        rows = {name: kw for name, kw in rows.items() if name.split(" ")[0] in wanted}
    models: dict[str, Path] = {"teacher (ResNet-18, supervised)": teacher}
    if not wanted or "a" in wanted:
        print("== a: supervised student", flush=True)
        sup = out / "a-supervised.ckpt"
        if not sup.exists():
            fit_teacher(FitConfig(data=str(data), out=str(sup), arch="mobilenetv2", input_size=p.size, split="train",
                                  steps=p.steps, batch_size=p.batch, lr=1e-3, workers=2), show_progress=show)
        models["a supervised, real train + GT"] = sup
    for name, overrides in rows.items():
        run = out / ("run-" + name.split(" ")[0] + ("-s1" if "seed 1" in name else ""))
        print(f"== {name}", flush=True)
        if not (run / "student.pt").exists():
            train(replace(base, out=str(run), resume=(run / "checkpoint.pt").exists(), **overrides), show_progress=show)
        models[name] = run / "student.pt"

    print("== evaluation", flush=True)
    device = torch.device("cpu")
    table = {}
    for name, path in models.items():
        cached = path.with_name(path.name + ".eval.json")  # a model evaluated by an earlier call is not redone
        if cached.exists() and cached.stat().st_mtime > path.stat().st_mtime:
            table[name] = json.loads(cached.read_text())
            continue
        model, _ = load_model_for_eval(str(path), device)
        key = name.split(" ")[0]
        r = {a: evaluate_model(model, data, p.size, device, protocol="nyu", align=a, split="test",
                               grid_path=out / f"grid-{key}.png" if a == "none" and "seed 1" not in name else None)
             for a in ("none", "median")}
        table[name] = {"eval": {a: {"overall": v["overall"], "per_scene": v["per_scene"]} for a, v in r.items()},
                       "params": count_params(model), "macs": count_macs(model, p.size),
                       "cpu_ms": cpu_latency_ms(model, p.size)}
        cached.write_text(json.dumps(table[name]))
    minutes = (time.time() - t_start) / 60
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    (out / "results.json").write_text(json.dumps({"profile": args.profile, "commit": commit, "minutes": minutes,
                                                  "rows": table}, indent=1))
    lines = [f"# Results: distilling an indoor depth teacher without its data ({args.profile} profile)", "",
             f"Command: `python scripts/experiment_indoor.py --data {args.data} --profile {args.profile}`; commit {commit}; "
             f"{minutes:.0f} minutes; input {p.size[0]}x{p.size[1]}; {p.steps} student steps of batch {p.batch}; "
             f"{p.n_sim} simulated images (seed 0); training seeds 0 unless stated.", "",
             "NYU protocol on split=test (Eigen crop, 1e-3 to 10 m), per image then averaged.", "",
             "| row | AbsRel | RMSE | delta1 | AbsRel (median) | RMSE (median) | delta1 (median) | params (M) | GMACs | CPU ms |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, v in table.items():
        n, m = v["eval"]["none"]["overall"], v["eval"]["median"]["overall"]
        lines.append(f"| {name} | {n['abs_rel']:.3f} | {n['rmse']:.3f} | {n['a1']:.3f} | {m['abs_rel']:.3f} | "
                     f"{m['rmse']:.3f} | {m['a1']:.3f} | {v['params'] / 1e6:.2f} | {v['macs'] / 1e9:.3f} | {v['cpu_ms']:.1f} |")
    scenes = sorted(next(iter(table.values()))["eval"]["none"]["per_scene"])
    lines += ["", "Per scene, AbsRel without alignment:", "", "| row | " + " | ".join(scenes) + " |",
              "|---|" + "---|" * len(scenes)]
    for name, v in table.items():
        ps = v["eval"]["none"]["per_scene"]
        lines.append(f"| {name} | " + " | ".join(f"{ps[s]['abs_rel']:.3f}" for s in scenes) + " |")
    lines += ["", "Same test images for every model (RGB | ground truth | prediction | error): "
              + ", ".join(f"`grid-{n.split(' ')[0]}.png`" for n in table if "seed 1" not in n), ""]
    shown = {n.split(" ")[0]: models[n] for n in table if "seed 1" not in n}
    frames = prediction_figure(shown, data, p.size, out / "figure.png")
    lines += ["", f"`figure.png`: depth predicted by each model (columns: {', '.join(shown)}) on the test frames "
              + ", ".join(frames) + "; each row coloured over the teacher's 2nd-98th percentile, near bright.", ""]
    (out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
