#!/usr/bin/env python
"""The paper's experiment on real indoor RGB-D data: fit a teacher, distil students, table them.

    python scripts/experiment_indoor.py --data ../shared/data/indoor-scenes --rows b,c,f [--seeds 0,1,2]
        [--profile cpu|round1|smoke] [--out out/experiment] [--report-only]

Each row is a file of TrainConfig overrides (the `distill train --config` format) under experiments/,
in a folder that names the images it learns from: sims (the profile's renders, seed 0), sims-sixth (a
sixth of them), real (the data's train split as `--images`: the paper's baseline b) and no-scene (the
sims with their 8x8 patches shuffled). Row `a` is a supervised MobileNetV2 on the real train split.
experiments/tables.json gives each row's label and the tables whose targets are checked (which rows
play b, c, f and g); docs/tries.md tells what each row measured.

The data folder is research data: read in place, never copied into the project; what is derived
from it (the list of real train images) goes under --out. Every stage is reused when the command is
run again with the same config; a changed config into the same --out is an error, not a silent reuse.
Writes OUT/results.md, OUT/results.json (one entry per row, seed, split and alignment),
OUT/figure-SPLIT.png and OUT/grid-ROW.png.
"""

from __future__ import annotations

import distill  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)

import argparse
import csv
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from distill.compare import (measure_model, metrics_table, per_scene_table, prediction_figure, result_entries,
                             seed_table, table_target_lines)
from distill.config import TrainConfig, drop_retired
from distill.data import RGBDFolder
from distill.fit_teacher import FitConfig, fit_teacher, partial_path
from distill.train import CHECKPOINT, FINAL, train
from simgen.config import RenderConfig
from simgen.derive import patch_shuffled
from simgen.options import Size, read_config_file
from simgen.runner import render
from simgen.runs import sha256_file

ROWS_DIR = Path(__file__).resolve().parents[1] / "experiments"
EVAL_SPLITS = ("test", "unseen")  # each one the data set has (rgbd-indoor: test only)
TEACHER_FILE, SUPERVISED_FILE = "teacher.ckpt", "a-supervised.ckpt"  # under --out: the teacher and row a


@dataclass
class Profile:
    size: Size          # input WIDTHxHEIGHT of every model
    n_sim: int
    teacher_steps: int
    steps: int          # student steps unless a row says otherwise
    batch: int
    resolution: Size    # render size
    samples_per_shard: int


PROFILES = {
    "smoke": Profile(Size(64, 32), 12, 4, 4, 4, Size(64, 48), 4),  # minutes: checks the pipeline, numbers mean nothing
    "round1": Profile(Size(128, 96), 600, 1500, 400, 8, Size(320, 240), 64),  # docs/results-round1.md, rgbd-indoor
    "cpu": Profile(Size(128, 96), 600, 1500, 1000, 8, Size(320, 240), 64),    # docs/results.md, indoor-scenes
}


@dataclass(frozen=True)
class Row:
    """One student: its id, the images it learns from (its folder under experiments/), its TrainConfig
    overrides and its training seed; run folder OUT/run-ID (seed 0) or OUT/run-ID-sSEED."""

    id: str
    images: str
    overrides: dict
    seed: int = 0

    @property
    def run(self) -> str:
        return self.id if self.seed == 0 else f"{self.id}-s{self.seed}"


def load_rows(root: Path = ROWS_DIR) -> dict[str, Row]:
    """Every row file under `root`, checked as a `--config` file (unknown or retired fields are errors)."""
    rows = {}
    for path in sorted(root.glob("*/*.json")):
        overrides = read_config_file(path, TrainConfig, clean=drop_retired)
        rows[path.stem] = Row(path.stem, path.parent.name, overrides)
    return rows


def select_rows(wanted: str, seeds: str, ap: argparse.ArgumentParser) -> tuple[list[Row], bool]:
    """The rows --rows names at each seed of --seeds, and whether row a is among them."""
    rows = load_rows()
    try:
        seed_list = [int(s) for s in seeds.split(",")]
    except ValueError:
        ap.error(f"--seeds: a comma-separated list of seeds such as 0,1,2, got {seeds!r}")
    keys = [k for k in wanted.split(",") if k]
    unknown = sorted(set(keys) - {"a"} - set(rows))
    if unknown:
        ap.error(f"--rows: no experiments/*/{unknown[0]}.json (rows: a, {', '.join(rows)})")
    return [replace(rows[k], seed=s) for k in keys if k != "a" for s in seed_list], "a" in keys


def prepare_images(p: Profile, out: Path, data: Path, needed: set[str], show: bool) -> dict[str, dict]:
    """The training data of each image set the rows name, as TrainConfig fields (rendered or derived once)."""
    cfg = RenderConfig(scene="indoor", resolution=p.resolution, samples_per_shard=p.samples_per_shard)
    # two Blender workers: the samples are the same for any worker count (a function of config, seed, index)
    sims = out / "sims"
    render(sims, cfg, seed=0, n=p.n_sim, workers=2, show_progress=show)
    images = {"sims": {"shards": [str(sims)]}}
    if "sims-sixth" in needed:
        render(out / "sims-sixth", cfg, seed=0, n=max(2, p.n_sim // 6), workers=2, show_progress=show)
        images["sims-sixth"] = {"shards": [str(out / "sims-sixth")]}
    if "no-scene" in needed:
        images["no-scene"] = {"shards": [str(patch_shuffled(sims, out / "no-scene"))]}
    if "real" in needed:  # the real train split's images as an --images list (read in place)
        listing = out / "real-train-images.txt"
        listing.write_text("".join(f"{Path(item['rgb']).resolve()}\n" for item in RGBDFolder(data, 1000.0, "train").items))
        images["real"] = {"images": [str(listing)], "shards": []}
    return images


def fit(p: Profile, data: Path, out: Path, arch: str, steps: int, lr: float, show: bool) -> Path:
    """A supervised model on the real train split (the teacher; row a), resumed where a sitting stopped."""
    fit_teacher(FitConfig(data=str(data), out=str(out), arch=arch, input_size=p.size, split="train", steps=steps,
                          batch_size=p.batch, lr=lr, workers=2, resume=partial_path(out).exists()), show_progress=show)
    return out


def train_all(p: Profile, out: Path, data: Path, rows: list[Row], with_a: bool, show: bool) -> dict[str, Path]:
    """Fit the teacher (and a), prepare the images, train the rows: {run: model file}."""
    print("== teacher", flush=True)
    models = {"teacher": fit(p, data, out / TEACHER_FILE, "resnet18", p.teacher_steps, 2e-3, show)}
    if with_a:
        print("== a: supervised student", flush=True)
        models["a"] = fit(p, data, out / SUPERVISED_FILE, "mobilenetv2", p.steps, 1e-3, show)
    print("== data", flush=True)
    images = prepare_images(p, out, data, {row.images for row in rows}, show)
    base = TrainConfig(out="", teacher={"source": str(models["teacher"]), "input_size": p.size}, steps=p.steps,
                       batch_size=p.batch, workers=2, log_every=20, ckpt_every=100, warmup=max(1, p.steps // 20))
    for row in rows:
        print(f"== {row.run}: {LABELS.get(row.id, '')}", flush=True)
        run = out / f"run-{row.run}"
        resume = (run / CHECKPOINT).exists() and not (run / FINAL).exists()
        # a finished run with the same config is reused; another config is refused
        train(replace(base, out=str(run), resume=resume, seed=row.seed, **images[row.images], **row.overrides),
              show_progress=show)
        models[row.run] = run / FINAL
    return models


def evaluate(p: Profile, out: Path, data: Path, models: dict[str, Path]) -> dict[str, dict[str, dict]]:
    """{split: {run: measure_model row}}; a model evaluated by an earlier call is read back."""
    with open(data / "index.csv", newline="") as f:
        present = {row.get("split") for row in csv.DictReader(f)}
    table: dict[str, dict] = {}
    for k, split in enumerate(s for s in EVAL_SPLITS if s in present):
        table[split] = {}
        for run, path in models.items():
            cached = path.with_name(path.name + f".eval-{split}.json")
            if cached.exists() and cached.stat().st_mtime > path.stat().st_mtime:
                table[split][run] = json.loads(cached.read_text())
                continue
            grid = out / f"grid-{run}.png" if "-s" not in run and split == "test" else None
            table[split][run] = measure_model(path, data, p.size, protocol="nyu", split=split, grid_path=grid,
                                              latency=k == 0)
            cached.write_text(json.dumps(table[split][run]))
    return table


def write_results(command: str, p: Profile, out: Path, data: Path, models: dict[str, Path], table: dict,
                  minutes: float) -> list[str]:
    entries = result_entries(table)
    sizes = {run: {k: row[k] for k in ("params", "macs", "cpu_ms") if k in row}
             for run, row in next(iter(table.values())).items()}
    # rows of different teacher fits (another CPU's bf16 kernels, a refit) are not comparable: say which
    teacher = sha256_file(out / TEACHER_FILE)
    (out / "results.json").write_text(json.dumps({"data": data.name, "command": command, "teacher_sha256": teacher,
                                                  "minutes": round(minutes, 1), "rows": entries, "models": sizes},
                                                 indent=1))
    lines = ["# Results: distilling an indoor depth teacher without its data", "",
             f"Command: `{command}`; data {data.name}; {minutes:.0f} minutes; input {p.size}; {p.n_sim} simulated "
             f"images; teacher sha256 {teacher[:12]} (rows of another teacher fit compare only with each other).", ""]
    shown = {run: path for run, path in models.items() if "-s" not in run}  # second seeds: tables only
    for split in table:
        lines += [f"## split={split}", "", "NYU protocol (Eigen crop, 1e-3 to 10 m), per image then averaged.", "",
                  *metrics_table(_labelled(table[split])), "", "Per scene, AbsRel without alignment:", "",
                  *per_scene_table(_labelled(table[split])), "", "Mean +- spread over training seeds:", "",
                  *seed_table(entries, split), "", "Targets:", "", *table_target_lines(entries, split, TABLES)]
        frames = prediction_figure(shown, data, p.size, out / f"figure-{split}.png", split)
        lines += [f"`figure-{split}.png`: depth of each model ({', '.join(shown)}) on " + ", ".join(frames) + ".", ""]
    (out / "results.md").write_text("\n".join(lines))
    return lines


def _labelled(rows: dict[str, dict]) -> dict[str, dict]:
    """Table rows keyed "RUN label" (experiments/tables.json)."""
    return {f"{run} {LABELS.get(run.partition('-s')[0], '')}".strip(): v for run, v in rows.items()}


def finished_models(out: Path, rows: list[Row], with_a: bool) -> dict[str, Path]:
    """--report-only: the model files of the teacher, a and the rows that have finished in `out`."""
    models = {"teacher": out / TEACHER_FILE} | ({"a": out / SUPERVISED_FILE} if with_a else {})
    models |= {r.run: out / f"run-{r.run}" / FINAL for r in rows}
    missing = [run for run, path in models.items() if not path.exists()]
    if missing:
        print(f"--report-only: not finished, left out: {', '.join(missing)}", flush=True)
    return {run: path for run, path in models.items() if run not in missing}


_META = json.loads((ROWS_DIR / "tables.json").read_text())
LABELS, TABLES = _META["labels"], _META["tables"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="RGB-D folder whose index.csv has split=train and test (and unseen)")
    ap.add_argument("--out", default="out/experiment")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    ap.add_argument("--rows", default="a,b,c,d,e,f,g,h", help="comma-separated rows: a, or experiments/*/ROW.json")
    ap.add_argument("--seeds", default="0", help="training seeds of every row, e.g. 0,1,2 (default %(default)s)")
    ap.add_argument("--report-only", action="store_true", help="train nothing: table the rows that have finished")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    p, out, data = PROFILES[args.profile], Path(args.out), Path(args.data).resolve()
    t_start = time.time()
    rows, with_a = select_rows(args.rows, args.seeds, ap)
    if args.report_only:
        if not (out / TEACHER_FILE).exists():
            ap.error(f"--report-only: {out} holds no fitted teacher (teacher.ckpt); run without it first")
        models = finished_models(out, rows, with_a)
    else:
        models = train_all(p, out, data, rows, with_a, not args.quiet)
    print("== evaluation", flush=True)
    command = f"python scripts/experiment_indoor.py --data {args.data} --profile {args.profile} --rows {args.rows} " \
              f"--seeds {args.seeds}" + (" --report-only" if args.report_only else "")
    table = evaluate(p, out, data, models)
    print("\n".join(write_results(command, p, out, data, models, table, (time.time() - t_start) / 60)))


if __name__ == "__main__":
    main()
