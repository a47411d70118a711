#!/usr/bin/env python
"""The paper's experiment on real indoor RGB-D data: one command for the whole table.

    python scripts/experiment_indoor.py --data ../shared/data/rgbd-indoor [--profile cpu|gpu|smoke] [--out out/experiment]

The data folder is research data: it is read in place, never copied into the project; derived
files (the list of real train images row b distils on with `--images`, noise images for row h) go
under --out.

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
Finished steps are reused when the command is run again, and only when their recorded config
matches (a changed --profile into the same --out is an error, not a silent reuse). `--variants` adds rows v1.. (VARIANTS):
changes to row f that the method leaves open. `--rows f,v4` runs only those rows (and the teacher).
"""

from __future__ import annotations

import distill  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)

import argparse
import json
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from distill.checkpoint import load_model
from distill.compare import measure_model, metrics_table, per_scene_table
from distill.data import RGBDFolder
from distill.evaluate import predict
from distill.fit_teacher import FitConfig, fit_teacher
from distill.mixing import MixConfig
from distill.train import CHECKPOINT, FINAL, TrainConfig, train
from simgen import shards
from simgen.config import RenderConfig
from simgen.options import Size
from simgen.runner import render


@dataclass
class Profile:
    size: Size          # input WIDTHxHEIGHT of every model
    n_sim: int
    teacher_steps: int
    steps: int
    batch: int
    resolution: Size    # render size
    samples_per_shard: int


PROFILES = {
    "smoke": Profile(Size(64, 32), 12, 4, 4, 4, Size(64, 48), 4),  # minutes: checks the pipeline, numbers mean nothing
    "cpu": Profile(Size(128, 96), 600, 1500, 400, 8, Size(320, 240), 64),   # 103 minutes on 2 cores (docs/results.md)
    "gpu": Profile(Size(320, 224), 6000, 8000, 4000, 16, Size(320, 240), 64),
}


@dataclass(frozen=True)
class Row:
    """One student of the table: its id (run folder run-ID, picture grid-ID), its label in the
    table, the training images it learns from, and how its TrainConfig differs from the base."""

    id: str
    label: str
    images: str                      # sims | sims-sixth | real | no-scene
    overrides: dict = field(default_factory=dict)

    @property
    def key(self) -> str:            # what --rows selects: "f" runs f and f-s1
        return self.id.split("-")[0]

    @property
    def shown(self) -> bool:         # second seeds are in the tables, not in the pictures
        return "-s" not in self.id


PLAIN_KD = {"mixing": False, "transform": "off"}
METHOD = {"mixing": True, "transform": "on"}
ROWS = [
    Row("b", "b KD, real train images", "real", PLAIN_KD),
    Row("c", "c KD, raw sims (seed 0)", "sims", PLAIN_KD),
    Row("c-s1", "c KD, raw sims (seed 1)", "sims", {**PLAIN_KD, "seed": 1}),
    Row("d", "d c + mixing", "sims", {"mixing": True, "transform": "off"}),
    Row("e", "e c + transformation", "sims", {"mixing": False, "transform": "on"}),
    Row("f", "f c + both (seed 0)", "sims", METHOD),
    Row("f-s1", "f c + both (seed 1)", "sims", {**METHOD, "seed": 1}),
    Row("g", "g f, 1/6 of the sims", "sims-sixth", METHOD),
    Row("h", "h KD, no-scene images", "no-scene", PLAIN_KD),
]
# Tries of what the method leaves open, each a change to row f; run with --variants.
VARIANTS = [
    # the defaults are the measured better form (normalised BN term, lr_T 1e-3); v1 and v2 are the
    # paper's form and the half-way point, kept so that the comparison can be made again
    Row("v1", "v1 f, the paper's BN sum, lr_T 1e-4", "sims", {**METHOD, "bn_loss": "sum", "lr_transform": 1e-4}),
    Row("v2", "v2 f, BN normalised, lr_T 1e-4 (seed 0)", "sims", {**METHOD, "lr_transform": 1e-4}),
    Row("v2-s1", "v2 f, BN normalised, lr_T 1e-4 (seed 1)", "sims", {**METHOD, "lr_transform": 1e-4, "seed": 1}),
    Row("v3", "v3 f, depth-aware mixing", "sims", {**METHOD, "mix": asdict(MixConfig(depth_aware=True))}),
    # the paper's step: T and the teacher run again after T's update for the student's target (the
    # default reuses T's own pass); measured to change nothing at this scale (docs/distill.md)
    Row("v4", "v4 f, KD target refreshed after T's update (seed 0)", "sims", {**METHOD, "refresh_kd_target": True}),
    Row("v4-s1", "v4 f, KD target refreshed after T's update (seed 1)", "sims",
        {**METHOD, "refresh_kd_target": True, "seed": 1}),
]


def real_train_list(data: Path, out: Path) -> Path:
    """The real train split's images as an `--images` list (paths into the data folder, read in
    place), for KD row b."""
    ds = RGBDFolder(data, 1000.0, "train")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"{Path(item['rgb']).resolve()}\n" for item in ds.items))
    return out


def patch_shuffled(src: Path, out: Path, patch: int = 8, seed: int = 0) -> Path:
    """Images with no scene: every image's 8x8 patches shuffled (colour statistics kept)."""
    config = {"derived_from": str(src), "patch": patch, "seed": seed}
    if shards.holds_complete_dataset(out, config):
        return out
    rng = np.random.default_rng(seed)
    source = shards.DatasetReader(src)
    with shards.DatasetWriter(out, depth_scale=source.depth_scale, max_depth_m=source.manifest["depth"]["max_m"],
                              samples_per_shard=source.manifest["samples_per_shard"], config=config, seed=seed,
                              generator="scripts/experiment_indoor.py") as writer:
        for s in source.iter_samples():
            h, w = (s.rgb.shape[0] // patch) * patch, (s.rgb.shape[1] // patch) * patch
            tiles = s.rgb[:h, :w].reshape(h // patch, patch, w // patch, patch, 3).swapaxes(1, 2).reshape(-1, patch, patch, 3)
            tiles = tiles[rng.permutation(len(tiles))]
            rgb = tiles.reshape(h // patch, w // patch, patch, patch, 3).swapaxes(1, 2).reshape(h, w, 3)
            writer.add(shards.Sample(s.index, np.ascontiguousarray(rgb), s.depth[:h, :w], np.zeros((h, w), np.uint16),
                                     {"index": s.index, "instances": []}))
    return out


def prediction_figure(models: dict[str, Path], data: Path, size: Size, path: Path, per_scene: int = 2) -> list[str]:
    """Depth predicted by every model on the same test frames (rows), one column per model.

    Predictions only: the frames and their ground truth belong to the data set, which stays out of
    the project (the names are returned; `grid-*.png` under --out show RGB and ground truth).
    Each row's colours span the teacher's 2nd-98th percentile, near bright, far dark."""
    from PIL import ImageDraw

    from simgen.preview import colorize_depth

    ds = RGBDFolder(data, 1000.0, "test")
    scenes = sorted({ds.items[i]["scene"] for i in range(len(ds))})
    picks = []
    for sc in scenes:
        idx = [i for i in range(len(ds)) if ds.items[i]["scene"] == sc]
        picks += [idx[int(k)] for k in np.linspace(0, len(idx) - 1, per_scene + 2)[1:-1].round()]
    loaded = {name: load_model(p)[0] for name, p in models.items()}
    tile_h, tile_w, head = 120, 160, 16
    canvas = Image.new("RGB", (tile_w * len(loaded), head + tile_h * len(picks)), "white")
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(loaded):
        draw.text((c * tile_w + 4, 2), name[:24], fill="black")
    for r, i in enumerate(picks):
        rgb = ds[i]["rgb"][None]
        preds = {name: predict(m, rgb, size)[0, 0].numpy() for name, m in loaded.items()}
        lo, hi = np.percentile(next(iter(preds.values())), [2, 98])
        for c, pred in enumerate(preds.values()):
            tile = Image.fromarray(colorize_depth(np.clip(pred, lo, hi), lo, hi)).resize((tile_w, tile_h))
            canvas.paste(tile, (c * tile_w, head + r * tile_h))
    canvas.save(path)
    return [f"{ds.items[i]['scene']}/{ds.items[i]['name']}" for i in picks]


def select_rows(rows: list[Row], wanted: str | None, ap: argparse.ArgumentParser) -> tuple[list[Row], bool]:
    """The rows --rows names (all when not given) and whether row a is among them."""
    if not wanted:
        return rows, True
    keys = set(wanted.split(","))
    unknown = keys - {"a"} - {r.key for r in rows}
    if unknown:
        ap.error(f"--rows: unknown row keys {', '.join(sorted(unknown))}")
    return [r for r in rows if r.key in keys], "a" in keys


def prepare_images(p: Profile, out: Path, data: Path, show: bool) -> dict[str, Path]:
    """Every training image set a row can name (rendered or derived once; reused after)."""
    sims, sims_sixth = out / "sims", out / "sims-sixth"
    cfg = RenderConfig(scene="indoor", resolution=p.resolution, samples_per_shard=p.samples_per_shard)
    render(sims, cfg, seed=0, n=p.n_sim, show_progress=show)
    render(sims_sixth, cfg, seed=0, n=max(2, p.n_sim // 6), show_progress=show)
    return {"sims": sims, "sims-sixth": sims_sixth, "real": real_train_list(data, out / "real-train-images.txt"),
            "no-scene": patch_shuffled(sims, out / "no-scene")}


def train_row(row: Row, base: TrainConfig, images: dict[str, Path], out: Path, show: bool) -> Path:
    run = out / f"run-{row.id}"
    resume = (run / CHECKPOINT).exists() and not (run / FINAL).exists()
    data = {"images": [str(images[row.images])], "shards": []} if row.images == "real" else \
        {"shards": [str(images[row.images])]}
    train(replace(base, out=str(run), resume=resume, **data, **row.overrides),
          show_progress=show)  # a finished run with the same config is reused; another config is refused
    return run / FINAL


def write_results(args: argparse.Namespace, p: Profile, out: Path, data: Path, table: dict, shown: dict[str, Path],
                  minutes: float) -> list[str]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    (out / "results.json").write_text(json.dumps({"profile": args.profile, "commit": commit, "minutes": minutes,
                                                  "rows": table}, indent=1))
    lines = [f"# Results: distilling an indoor depth teacher without its data ({args.profile} profile)", "",
             f"Command: `python scripts/experiment_indoor.py --data {args.data} --profile {args.profile}`; commit {commit}; "
             f"{minutes:.0f} minutes; input {p.size}; {p.steps} student steps of batch {p.batch}; "
             f"{p.n_sim} simulated images (seed 0); training seeds 0 unless stated.", "",
             "NYU protocol on split=test (Eigen crop, 1e-3 to 10 m), per image then averaged.", "",
             *metrics_table(table), "", "Per scene, AbsRel without alignment:", "", *per_scene_table(table), "",
             "Same test images for every model (RGB | ground truth | prediction | error): "
             + ", ".join(f"`grid-{key}.png`" for key in shown), ""]
    frames = prediction_figure(shown, data, p.size, out / "figure.png")
    lines += ["", f"`figure.png`: depth predicted by each model (columns: {', '.join(shown)}) on the test frames "
              + ", ".join(frames) + "; each row coloured over the teacher's 2nd-98th percentile, near bright.", ""]
    (out / "results.md").write_text("\n".join(lines))
    return lines


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
    rows, with_a = select_rows(ROWS + (VARIANTS if args.variants else []), args.rows, ap)

    print("== teacher", flush=True)
    teacher = out / "teacher.ckpt"
    fit_teacher(FitConfig(data=str(data), out=str(teacher), arch="resnet18", input_size=p.size, split="train",
                          steps=p.teacher_steps, batch_size=p.batch, lr=2e-3, workers=2), show_progress=show)
    models: dict[str, tuple[str, Path]] = {"teacher (ResNet-18, supervised)": ("teacher", teacher)}
    if with_a:
        print("== a: supervised student", flush=True)
        sup = out / "a-supervised.ckpt"
        fit_teacher(FitConfig(data=str(data), out=str(sup), arch="mobilenetv2", input_size=p.size, split="train",
                              steps=p.steps, batch_size=p.batch, lr=1e-3, workers=2), show_progress=show)
        models["a supervised, real train + GT"] = ("a", sup)

    print("== data", flush=True)
    images = prepare_images(p, out, data, show)
    base = TrainConfig(out="", teacher={"source": str(teacher), "input_size": p.size}, steps=p.steps,
                       batch_size=p.batch, workers=2, log_every=20, ckpt_every=100, warmup=max(1, p.steps // 20))
    for row in rows:
        print(f"== {row.label}", flush=True)
        models[row.label] = (row.id, train_row(row, base, images, out, show))

    print("== evaluation", flush=True)
    table = {}
    for label, (row_id, path) in models.items():
        cached = path.with_name(path.name + ".eval.json")  # a model evaluated by an earlier call is not redone
        if cached.exists() and cached.stat().st_mtime > path.stat().st_mtime:
            table[label] = json.loads(cached.read_text())
            continue
        grid = out / f"grid-{row_id}.png" if "-s" not in row_id else None
        table[label] = measure_model(path, data, p.size, protocol="nyu", split="test", grid_path=grid)
        cached.write_text(json.dumps(table[label]))
    shown = {row_id: path for row_id, path in models.values() if "-s" not in row_id}
    lines = write_results(args, p, out, data, table, shown, (time.time() - t_start) / 60)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
