#!/usr/bin/env python
"""The paper's experiment on real indoor RGB-D data: one command for the whole table.

    python scripts/experiment_indoor.py --data ../shared/data/rgbd-indoor [--profile cpu|long|round1|gpu|smoke] [--out out/experiment]

The data folder is research data: it is read in place, never copied into the project; derived
files (the list of real train images row b distils on with `--images`, noise images for row h) go
under --out.

Rows (every student: MobileNetV2 from random weights, same steps, batch and schedule; tries v29-v36 change
the student, `--variants`):
  teacher  ResNet-18 fitted on split=train with ground truth (`distill fit-teacher`)
  a  supervised on the real train split (reference)
  b  KD with the real train images (the paper's baseline)
  c  KD with raw simulated images                      (--mixing off --transform off)
  d  c + object-wise mixing
  e  c + transformation network
  f  c + both (the method)
  g  f with one sixth of the simulated images
  h  KD with images that carry no scene (shuffled 8x8 patches of the simulated images): the floor
b, c and f are trained with seeds 0, 1, 2 (SEEDS) and reported as mean and spread. Each model is
evaluated on split=test and, where the data has it, split=unseen (rooms no train frame comes
from), per scene and overall (AbsRel, RMSE, delta1) with no alignment and with median alignment,
plus parameters, MACs and CPU latency. Writes OUT/results.md (copy it to docs/results.md),
OUT/results.json (one entry per row, seed, split and alignment; commit it as docs/results.json),
OUT/figure-SPLIT.png (every model's depth on the same frames) and OUT/grid-*.png.
Finished steps are reused when the command is run again, and only when their recorded config
matches (a changed --profile into the same --out is an error, not a silent reuse). `--variants` adds rows v1.. (VARIANTS):
changes to rows b, c and f (mostly what the method leaves open). `--rows f,v4` runs only those rows (and the teacher);
`--seeds 0` only that training seed of the seeded rows. `--report-only` fits, renders and trains
nothing: it tables the selected rows whose runs have finished (e.g. rows whose seeds were trained by
separate calls) and names those left out.
"""

from __future__ import annotations

import distill  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)

import argparse
import csv
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
from distill.fit_teacher import FitConfig, fit_teacher, partial_path
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
    # the first round's table (docs/results-round1.md, rgbd-indoor): 103 minutes on 2 cores then
    "round1": Profile(Size(128, 96), 600, 1500, 400, 8, Size(320, 240), 64),
    # the second round's table (docs/results.md): all rows (a-h, three seeds of b, c, f) took about
    # 93 minutes on 2 cores with native bf16 (3-6x longer without it)
    "cpu": Profile(Size(128, 96), 600, 1500, 1000, 8, Size(320, 240), 64),
    # four times the cpu profile's training, three times its sims: about 6 hours on 2 cores (an
    # estimate from the cpu profile's per-step times; not run yet). Every stage saves its progress,
    # so the same command run again continues where the last sitting stopped.
    "long": Profile(Size(128, 96), 1800, 6000, 4000, 8, Size(320, 240), 64),
    "gpu": Profile(Size(320, 224), 6000, 8000, 4000, 16, Size(320, 240), 64),
}


@dataclass(frozen=True)
class Row:
    """One student of the table: its id (run folder run-ID, picture grid-ID), its label in the
    table, the training images it learns from, and how its TrainConfig differs from the base."""

    id: str
    label: str
    images: str                      # sims | sims-sixth | sims-x3 | sims-other | sims-rooms | sims-closeup | real | no-scene
    overrides: dict = field(default_factory=dict)

    @property
    def key(self) -> str:            # what --rows selects: "f" runs f and f-s1
        return self.id.split("-")[0]

    @property
    def shown(self) -> bool:         # second seeds are in the tables, not in the pictures
        return "-s" not in self.id


PLAIN_KD = {"mixing": False, "transform": "off"}
METHOD = {"mixing": True, "transform": "on"}
# the long profile's student steps, for tries v19-v23 on the cpu profile's teacher and sims
LONG_STEPS = PROFILES["long"].steps
CPU_STEPS = PROFILES["cpu"].steps
# tries v24/v25 (--transform-until): T learns over the first 1/T_LEARNS_PART of the steps, then keeps its weights
T_LEARNS_PART = 4
# the rows the targets compare, and the same rows at the long schedule (tries v21, v19, v22)
BASE_IDS = {"b": "b", "c": "c", "f": "f", "g": "g"}
LONG_IDS = {"b": "v21", "c": "v19", "f": "v22"}
# try v26: weight of T's render-depth term. The normalised BN term sums to about 12 over the teacher's 25
# layers through a run (v22's log), the teacher's scale-invariant log error on sims is a few tenths:
# 10 makes the two comparable (a first guess, not tuned)
W_RENDER_DEPTH = 10.0
# tries v29-v31: the student is the teacher with the later blocks of each stage left out
FROM_TEACHER = {"student": "resnet10", "init_student": "teacher"}
# tries v32, v33: weight of the feature hints, chosen on the demo's validation rooms (simulated, seed 3000;
# docs/distill.md), not on this data
W_FEATURE = 10.0
# plain KD (v34 on sims, v36 on real images) and the method (v35) from the teacher with hints at 4000
# steps: the base of the tries after them
HINTED_KD = {**PLAIN_KD, **FROM_TEACHER, "w_feature": W_FEATURE, "steps": LONG_STEPS}
HINTED_METHOD = {**METHOD, **FROM_TEACHER, "w_feature": W_FEATURE, "steps": LONG_STEPS}
TEACHER_BN = {"student_bn": "teacher"}
ENCODER_BN = {"student_bn": "encoder"}
# the end points the tries reached: the ResNet-10 from the teacher with hints at 4000 steps, its BN on the
# batch's statistics (v34-v36, g as v41) and on the teacher's (v49-v51, g as v56); the targets are checked
# for each, the rows d, e, h of the latter form are v54, v55, v57
END_POINT_IDS = {"End point, batch BN": {"b": "v36", "c": "v34", "f": "v35", "g": "v41"},
                 "End point, teacher BN": {"b": "v51", "c": "v50", "f": "v49", "g": "v56"}}
SEEDS = (0, 1, 2)  # training seeds of the rows the targets compare (b, c, f): mean and spread
# Images "sims-closeup" (tries v10, v11): this share of the sims replaced by table-top close-ups. The
# sim students' worst test scene is a desk seen from 0.3-1 m (docs/results.md), which the default
# viewpoint mix (20% table-top) shows rarely.
CLOSEUP_SHARE = 0.5
# Images "sims-x3" (tries v43, v44): `sims` plus this many times as many other renders of the same
# config (dataset seed 1), the long profile's 1800 distinct sims on the cpu profile's render settings;
# "sims-other" (v45): the first n_sim of those other renders alone
MORE_SIMS_FACTOR = 2
# Images "sims-rooms" (tries v46, v47): as many sims as `sims`, drawn only from the room types that the
# teacher's train scenes show (the data README names a kitchen, offices and a corridor; desk close-ups
# stay in the default viewpoint mix) instead of all six default types. A user knows which rooms the
# teacher was made for; this is chosen from the train scenes' kinds, not tuned on either split.
TARGET_ROOMS = ("kitchen", "office", "corridor")


def seeded(id: str, label: str, images: str, overrides: dict) -> list[Row]:
    """One row per training seed: ID (seed 0), ID-s1, ID-s2."""
    return [Row(id if s == 0 else f"{id}-s{s}", f"{label} (seed {s})", images,
                overrides if s == 0 else {**overrides, "seed": s}) for s in SEEDS]


ROWS = [
    *seeded("b", "b KD, real train images", "real", PLAIN_KD),
    *seeded("c", "c KD, raw sims", "sims", PLAIN_KD),
    Row("d", "d c + mixing", "sims", {"mixing": True, "transform": "off"}),
    Row("e", "e c + transformation", "sims", {"mixing": False, "transform": "on"}),
    *seeded("f", "f c + both", "sims", METHOD),
    Row("g", "g f, 1/6 of the sims", "sims-sixth", METHOD),
    Row("h", "h KD, no-scene images", "no-scene", PLAIN_KD),
]
EVAL_SPLITS = ("test", "unseen")  # each one the data set has (rgbd-indoor: test only)
TEACHER_FILE, SUPERVISED_FILE = "teacher.ckpt", "a-supervised.ckpt"  # under --out: the teacher and row a
TEACHER_LABEL, SUPERVISED_LABEL = "teacher (ResNet-18, supervised)", "a supervised, real train + GT"
# Tries, each a change to row b, c or f (mostly what the method leaves open); run with --variants.
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
    # the student's output bias set to the teacher's median depth before the first step
    # (--init-output on): at the default init it predicts about 0.2 m and spends steps finding the scale
    Row("v5", "v5 c, output started at the teacher's depth", "sims", {**PLAIN_KD, "init_output": True}),
    *seeded("v6", "v6 f, output started at the teacher's depth", "sims", {**METHOD, "init_output": True}),
    Row("v7", "v7 b, output started at the teacher's depth", "real", {**PLAIN_KD, "init_output": True}),
    # T's design and image prior (docs/distill.md, step 3); w_tv 10 puts the TV of T's change on
    # the content term's footing (both L1, weight 10): a first guess, not tuned
    Row("v8", "v8 f, T with a TV prior on its change (w_tv 10)", "sims", {**METHOD, "w_tv": 10.0}),
    Row("v9", "v9 f, photometric T (per-image colour, contrast, blur, noise)", "sims",
        {**METHOD, "transform_net": "photometric"}),
    # camera ranges closer to the target: half the sims replaced by table-top close-ups (CLOSEUP_SHARE)
    *seeded("v10", "v10 c, half the sims table-top close-ups", "sims-closeup", PLAIN_KD),
    *seeded("v11", "v11 f, half the sims table-top close-ups", "sims-closeup", METHOD),
    # T's schedule and which BN layers its term counts (--transform-steps, --bn-layers)
    *seeded("v12", "v12 f, two T steps per student step", "sims", {**METHOD, "transform_steps": 2}),
    *seeded("v13", "v13 f, BN term on the early half of the layers", "sims", {**METHOD, "bn_layers": "early"}),
    *seeded("v14", "v14 f, BN term on the late half of the layers", "sims", {**METHOD, "bn_layers": "late"}),
    *seeded("v15", "v15 v14 with the BN term weighted 3x", "sims", {**METHOD, "bn_layers": "late", "w_bn": 3.0}),
    # the near scenes v14/v15 read as far, with the close-ups of v11
    *seeded("v16", "v16 v14, half the sims table-top close-ups", "sims-closeup", {**METHOD, "bn_layers": "late"}),
    # a weight between all and late: the early half counted at a quarter (`--bn-layers 0.25:1`)
    *seeded("v17", "v17 v16, BN term's early half weighted 0.25", "sims-closeup", {**METHOD, "bn_layers": "0.25:1"}),
    *seeded("v18", "v18 f, BN term's early half weighted 0.25", "sims", {**METHOD, "bn_layers": "0.25:1"}),
    # four times the student steps (the long profile's schedule) on the cpu profile's teacher and sims:
    # does the method's lead over c grow or shrink with training
    *seeded("v19", "v19 c, 4000 steps", "sims", {**PLAIN_KD, "steps": LONG_STEPS}),
    *seeded("v20", "v20 v17, 4000 steps", "sims-closeup", {**METHOD, "bn_layers": "0.25:1", "steps": LONG_STEPS}),
    # the yardstick for "long enough": does KD on the teacher's own images reach the teacher
    *seeded("v21", "v21 b, 4000 steps", "real", {**PLAIN_KD, "steps": LONG_STEPS}),
    # the method at the long schedule on the default sims (v20's close-up set aside): f itself, and v18's form
    *seeded("v22", "v22 f, 4000 steps", "sims", {**METHOD, "steps": LONG_STEPS}),
    *seeded("v23", "v23 v18, 4000 steps", "sims", {**METHOD, "bn_layers": "0.25:1", "steps": LONG_STEPS}),
    # f's seeds spread 10-20x c's at 4000 steps: is it T moving the student's images all run long? T learns
    # over the first quarter (its learning rate decaying to 0 there), then the student learns on a fixed T
    *seeded("v24", "v24 f, T learns the first quarter of the steps", "sims",
            {**METHOD, "steps": CPU_STEPS, "transform_until": CPU_STEPS // T_LEARNS_PART}),
    *seeded("v25", "v25 v24, 4000 steps", "sims",
            {**METHOD, "steps": LONG_STEPS, "transform_until": LONG_STEPS // T_LEARNS_PART}),
    # at 4000 steps plain KD (v19) beats f (v22) in the teacher's rooms, and the teacher reads sims with 0.57
    # AbsRel whatever T does to their BN statistics: T also learns to make renders the teacher reads right
    # (--w-render-depth; W_RENDER_DEPTH puts it on the BN term's footing)
    *seeded("v26", "v26 v22, T's render-depth term", "sims",
            {**METHOD, "steps": LONG_STEPS, "w_render_depth": W_RENDER_DEPTH}),
    # which half of the method costs f its test ground at 4000 steps: e (T alone) and d (mixing alone)
    *seeded("v27", "v27 e, 4000 steps", "sims", {"mixing": False, "transform": "on", "steps": LONG_STEPS}),
    *seeded("v28", "v28 d, 4000 steps", "sims", {"mixing": True, "transform": "off", "steps": LONG_STEPS}),
    # the student started from the teacher's own weights: a ResNet-10 that keeps the teacher's stem, the
    # first block of each stage and its decoder (--init-student teacher), for b, c and f
    *seeded("v29", "v29 c, ResNet-10 from the teacher", "sims", {**PLAIN_KD, **FROM_TEACHER}),
    *seeded("v30", "v30 f, ResNet-10 from the teacher", "sims", {**METHOD, **FROM_TEACHER}),
    *seeded("v31", "v31 b, ResNet-10 from the teacher", "real", {**PLAIN_KD, **FROM_TEACHER}),
    # the ResNet-10 from the teacher also matches the teacher's encoder features on the same images
    # (--w-feature: FitNets' hints, level for level; its encoder has the teacher's channels)
    *seeded("v32", "v32 v29 + feature hints", "sims", {**PLAIN_KD, **FROM_TEACHER, "w_feature": W_FEATURE}),
    *seeded("v33", "v33 v30 + feature hints", "sims", {**METHOD, **FROM_TEACHER, "w_feature": W_FEATURE}),
    # the same at four times the steps: where they end, not how fast they learn
    *seeded("v34", "v34 v32, 4000 steps", "sims",
            HINTED_KD),
    *seeded("v35", "v35 v33, 4000 steps", "sims",
            HINTED_METHOD),
    # b under the same student, hints and schedule: the reference for v35's RMSE target
    *seeded("v36", "v36 v31 + feature hints, 4000 steps", "real",
            HINTED_KD),
    # levers on v35 (f, from the teacher, hints, 4000 steps): hints weighted 3x; mixing alone (d);
    # T's constrained photometric design
    *seeded("v37", "v37 v35, hints weighted 3x", "sims",
            {**METHOD, **FROM_TEACHER, "w_feature": 3 * W_FEATURE, "steps": LONG_STEPS}),
    *seeded("v38", "v38 d from the teacher + hints, 4000 steps", "sims",
            {"mixing": True, "transform": "off", **FROM_TEACHER, "w_feature": W_FEATURE, "steps": LONG_STEPS}),
    *seeded("v39", "v39 v35, photometric T", "sims",
            {**METHOD, **FROM_TEACHER, "w_feature": W_FEATURE, "steps": LONG_STEPS, "transform_net": "photometric"}),
    # hints on the decoder's up-sampling blocks too (--hint-levels all)
    *seeded("v40", "v40 v35, hints on the decoder too", "sims",
            {**METHOD, **FROM_TEACHER, "w_feature": W_FEATURE, "hint_levels": "all", "steps": LONG_STEPS}),
    # the student learns on half of each batch through T, the other half as mixed (--transform-share 0.5):
    # in v35 T helps 7scenes_redkitchen and costs rs_d435_tronphan and tum_fr3 against v34/v38 (seed 0, test)
    *seeded("v42", "v42 v35, half of each batch through T", "sims",
            {**METHOD, **FROM_TEACHER, "w_feature": W_FEATURE, "transform_share": 0.5, "steps": LONG_STEPS}),
    # more distinct sims (v41 on 100 sims was 0.027 AbsRel behind v35 on 600): the best f (v42) and c
    # with hints (v34) on three times as many (600 + 1200 of dataset seed 1)
    *seeded("v43", "v43 v42 on 3x the sims", "sims-x3",
            {**METHOD, **FROM_TEACHER, "w_feature": W_FEATURE, "transform_share": 0.5, "steps": LONG_STEPS}),
    *seeded("v44", "v44 v34 on 3x the sims", "sims-x3",
            HINTED_KD),
    # the control for v43/v44: as many sims as `sims`, other renders (the first of the dataset seed 1 ones)
    *seeded("v45", "v45 v34 on 600 other sims", "sims-other",
            HINTED_KD),
    # room types nearer the test scenes (TARGET_ROOMS): f (v35) and c (v34) with hints on 600 such sims
    *seeded("v46", "v46 v35 on sims of the train scenes' room types", "sims-rooms",
            HINTED_METHOD),
    *seeded("v47", "v47 v34 on sims of the train scenes' room types", "sims-rooms",
            HINTED_KD),
    # the student's BatchNorm layers keep the teacher's running statistics (--student-bn teacher): trained
    # on sims with batch statistics, a student normalises real images with sim statistics (v47's stem: its
    # running means differ from the teacher's by 1.5 times their mean size), the teacher with real ones.
    # v48: the quick probe (c at 1000 steps, v32); v49/v50: f and c at 4000 (v35, v34)
    *seeded("v48", "v48 v32, BN on the teacher's statistics", "sims", {**PLAIN_KD, **FROM_TEACHER,
                                                                      "w_feature": W_FEATURE, **TEACHER_BN}),
    *seeded("v49", "v49 v35, BN on the teacher's statistics", "sims", {**HINTED_METHOD, **TEACHER_BN}),
    *seeded("v50", "v50 v34, BN on the teacher's statistics", "sims", {**HINTED_KD, **TEACHER_BN}),
    # and b (v36) in the same form: whether the reference moves too
    *seeded("v51", "v51 v36, BN on the teacher's statistics", "real", {**HINTED_KD, **TEACHER_BN}),
    # the middle form (--student-bn encoder): the teacher's statistics in the encoder, where the images'
    # statistics enter; the decoder's follow the batch, which with v35/v34's batch BN read unseen rooms better
    # than the teacher after median alignment (v49/v50 lost that). f (v52) and c (v53)
    *seeded("v52", "v52 v35, encoder BN on the teacher's statistics", "sims", {**HINTED_METHOD, **ENCODER_BN}),
    *seeded("v53", "v53 v34, encoder BN on the teacher's statistics", "sims", {**HINTED_KD, **ENCODER_BN}),
    # g's question for this student: v35 on a sixth of the sims (100 distinct images)
    *seeded("v41", "v41 v35 on 1/6 of the sims (g)", "sims-sixth",
            HINTED_METHOD),
    # the table's other rows at the end point, in the form of v49-v51 (f, c, b: from the teacher, hints,
    # 4000 steps, the teacher's BN statistics): mixing alone (d), T alone (e), f on a sixth of the sims (g)
    # and KD on no-scene images (h)
    *seeded("v54", "v54 d in v49's form", "sims", {**HINTED_KD, **TEACHER_BN, "mixing": True}),
    *seeded("v55", "v55 e in v49's form", "sims", {**HINTED_KD, **TEACHER_BN, "transform": "on"}),
    *seeded("v56", "v56 g in v49's form", "sims-sixth", {**HINTED_METHOD, **TEACHER_BN}),
    *seeded("v57", "v57 h in v49's form", "no-scene", {**HINTED_KD, **TEACHER_BN}),
]


def real_train_list(data: Path, out: Path) -> Path:
    """The real train split's images as an `--images` list (paths into the data folder, read in
    place), for KD row b."""
    ds = RGBDFolder(data, 1000.0, "train")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"{Path(item['rgb']).resolve()}\n" for item in ds.items))
    return out


def derived_dataset(src: Path, out: Path, config: dict, change, n: int | None = None, seed: int = 0) -> Path:
    """A dataset made from the first `n` (all) samples of `src`, each passed through `change`
    (Sample, rng) -> Sample; made once, reused while its recorded config matches."""
    if shards.holds_complete_dataset(out, config):
        return out
    rng = np.random.default_rng(seed)
    source = shards.DatasetReader(src)
    with shards.DatasetWriter(out, depth_scale=source.depth_scale, max_depth_m=source.manifest["depth"]["max_m"],
                              samples_per_shard=source.manifest["samples_per_shard"], config=config, seed=seed,
                              generator="scripts/experiment_indoor.py") as writer:
        for k, s in enumerate(source.iter_samples()):
            if n is not None and k == n:
                break
            writer.add(change(s, rng))
    return out


def patch_shuffled(src: Path, out: Path, patch: int = 8, seed: int = 0) -> Path:
    """Images with no scene: every image's 8x8 patches shuffled (colour statistics kept)."""
    def shuffle(s: shards.Sample, rng: np.random.Generator) -> shards.Sample:
        h, w = (s.rgb.shape[0] // patch) * patch, (s.rgb.shape[1] // patch) * patch
        tiles = s.rgb[:h, :w].reshape(h // patch, patch, w // patch, patch, 3).swapaxes(1, 2).reshape(-1, patch, patch, 3)
        tiles = tiles[rng.permutation(len(tiles))]
        rgb = tiles.reshape(h // patch, w // patch, patch, patch, 3).swapaxes(1, 2).reshape(h, w, 3)
        return shards.Sample(s.index, np.ascontiguousarray(rgb), s.depth[:h, :w], np.zeros((h, w), np.uint16),
                             {"index": s.index, "instances": []})

    return derived_dataset(src, out, {"derived_from": str(src), "patch": patch, "seed": seed}, shuffle, seed=seed)


def first_samples(src: Path, out: Path, n: int) -> Path:
    """The first n samples of src, unchanged."""
    return derived_dataset(src, out, {"derived_from": str(src), "first": n}, lambda s, rng: s, n=n)


def prediction_figure(models: dict[str, Path], data: Path, size: Size, path: Path, split: str = "test",
                      per_scene: int = 2) -> list[str]:
    """Depth predicted by every model on the same frames of a split (rows), one column per model.

    Predictions only: the frames and their ground truth belong to the data set, which stays out of
    the project (the names are returned; `grid-*.png` under --out show RGB and ground truth).
    Each row's colours span the teacher's 2nd-98th percentile, near bright, far dark."""
    from PIL import ImageDraw

    from simgen.preview import colorize_depth

    ds = RGBDFolder(data, 1000.0, split)
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


def select_rows(rows: list[Row], wanted: str | None, seeds: str, ap: argparse.ArgumentParser) -> tuple[list[Row], bool]:
    """The rows --rows names (all when not given) at the training seeds --seeds names, and whether
    row a is among them."""
    try:
        seed_set = {int(s) for s in seeds.split(",")}
    except ValueError:
        ap.error(f"--seeds: a comma-separated list of seeds such as 0,1,2, got {seeds!r}")
    rows = [r for r in rows if run_id_parts(r.id)[1] in seed_set]
    if not wanted:
        return rows, True
    keys = set(wanted.split(","))
    unknown = keys - {"a"} - {r.key for r in rows}
    if unknown:
        ap.error(f"--rows: unknown row keys {', '.join(sorted(unknown))} (at seeds {seeds})")
    return [r for r in rows if r.key in keys], "a" in keys


def prepare_images(p: Profile, out: Path, data: Path, needed: set[str], show: bool) -> dict[str, list[Path]]:
    """Every training image set the rows name (rendered or derived once; reused after)."""
    sims, sims_sixth = out / "sims", out / "sims-sixth"
    cfg = RenderConfig(scene="indoor", resolution=p.resolution, samples_per_shard=p.samples_per_shard)
    # two Blender workers: the samples are the same for any worker count (a function of config, seed, index)
    render(sims, cfg, seed=0, n=p.n_sim, workers=2, show_progress=show)
    render(sims_sixth, cfg, seed=0, n=max(2, p.n_sim // 6), workers=2, show_progress=show)
    images = {"sims": [sims], "sims-sixth": [sims_sixth], "real": [real_train_list(data, out / "real-train-images.txt")],
              "no-scene": [patch_shuffled(sims, out / "no-scene")]}
    if "sims-closeup" in needed:
        # as many images as `sims`: its first CLOSEUP_SHARE kept, the rest table-top close-ups of
        # other rooms (seed 1); with the default viewpoint mix's 20% the close-ups are then about 60%
        n_close = round(p.n_sim * CLOSEUP_SHARE)
        render(out / "sims-tabletop", replace(cfg, viewpoint="tabletop"), seed=1, n=n_close, workers=2,
               show_progress=show)
        images["sims-closeup"] = [first_samples(sims, out / "sims-first", p.n_sim - n_close), out / "sims-tabletop"]
    if needed & {"sims-x3", "sims-other"}:
        render(out / "sims-more", cfg, seed=1, n=p.n_sim * MORE_SIMS_FACTOR, workers=2, show_progress=show)
        images["sims-x3"] = [sims, out / "sims-more"]
        if "sims-other" in needed:
            images["sims-other"] = [first_samples(out / "sims-more", out / "sims-more-first", p.n_sim)]
    if "sims-rooms" in needed:
        render(out / "sims-rooms", replace(cfg, rooms=list(TARGET_ROOMS)), seed=0, n=p.n_sim, workers=2,
               show_progress=show)
        images["sims-rooms"] = [out / "sims-rooms"]
    return images


def finished_rows(rows: list[Row], out: Path) -> tuple[list[Row], list[Row]]:
    """--report-only: the rows whose runs in `out` have finished (run-ID/student.pt), and the others."""
    done = [r for r in rows if (out / f"run-{r.id}" / FINAL).exists()]
    return done, [r for r in rows if r not in done]


def train_row(row: Row, base: TrainConfig, images: dict[str, list[Path]], out: Path, show: bool) -> Path:
    run = out / f"run-{row.id}"
    resume = (run / CHECKPOINT).exists() and not (run / FINAL).exists()
    paths = [str(path) for path in images[row.images]]
    data = {"images": paths, "shards": []} if row.images == "real" else {"shards": paths}
    train(replace(base, out=str(run), resume=resume, **data, **row.overrides),
          show_progress=show)  # a finished run with the same config is reused; another config is refused
    return run / FINAL


def data_splits(data: Path) -> list[str]:
    """The EVAL_SPLITS that the data set's index.csv has."""
    with open(data / "index.csv", newline="") as f:
        present = {row.get("split") for row in csv.DictReader(f)}
    return [s for s in EVAL_SPLITS if s in present]


def run_id_parts(row_id: str) -> tuple[str, int]:
    """'f-s2' -> ('f', 2); 'teacher' -> ('teacher', 0)."""
    base, _, seed = row_id.partition("-s")
    return base, int(seed) if seed else 0


def result_entries(table: dict[str, dict[str, dict]], ids: dict[str, str]) -> list[dict]:
    """results.json rows: one per model, seed, split and alignment."""
    entries = []
    for split, rows in table.items():
        for label, row in rows.items():
            base, seed = run_id_parts(ids[label])
            for align, ev in row["eval"].items():
                m = ev["overall"]
                entries.append({"id": base, "run": ids[label], "label": label, "seed": seed, "split": split,
                                "align": align, "abs_rel": m["abs_rel"], "rmse": m["rmse"], "a1": m["a1"]})
    return entries


def seed_stats(entries: list[dict], split: str, align: str, metric: str) -> dict[str, tuple[float, float, int]]:
    """{row id: (mean, spread, seeds)} over seeds; spread = sample standard deviation (0 for one seed)."""
    groups: dict[str, list[float]] = {}
    for e in entries:
        if e["split"] == split and e["align"] == align:
            groups.setdefault(e["id"], []).append(e[metric])
    return {k: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v)) for k, v in groups.items()}


def seed_table(entries: list[dict], split: str) -> list[str]:
    """Markdown: mean +- spread of every row with more than one seed."""
    cols = [("none", "abs_rel"), ("none", "rmse"), ("none", "a1"), ("median", "abs_rel")]
    stats = {c: seed_stats(entries, split, *c) for c in cols}
    multi = [k for k, (_, _, n) in stats[cols[0]].items() if n > 1]
    lines = ["| row (seeds) | AbsRel | RMSE | delta1 | AbsRel (median) |", "|---|---|---|---|---|"]
    for k in multi:
        cells = [f"{stats[c][k][0]:.3f} +- {stats[c][k][1]:.3f}" for c in cols]
        lines.append(f"| {k} ({stats[cols[0]][k][2]}) | " + " | ".join(cells) + " |")
    return lines


def target_lines(entries: list[dict], split: str, ids: dict[str, str] = BASE_IDS) -> list[str]:
    """The real-data issue's targets, checked on one split (those whose rows were run), for the rows
    that play b, c, f and g (BASE_IDS; LONG_IDS: the same rows at the long schedule; END_POINT_IDS)."""
    b, c, f, g = ids["b"], ids["c"], ids["f"], ids.get("g")
    none = {m: seed_stats(entries, split, "none", m) for m in ("abs_rel", "rmse", "a1")}
    med = seed_stats(entries, split, "median", "abs_rel")
    lines = []
    if f in none["abs_rel"] and c in none["abs_rel"]:
        for m, better in (("abs_rel", -1), ("rmse", -1), ("a1", 1)):
            (fm, fs, fn), (cm, cs, cn) = none[m][f], none[m][c]
            gain = (fm - cm) * better
            verdict = "not judged: one seed, no spread" if min(fn, cn) < 2 else "met" if gain > max(fs, cs) else "missed"
            lines.append(f"- {f} against {c}, {m}: {fm:.3f} +- {fs:.3f} against {cm:.3f} +- {cs:.3f}: {verdict} "
                         f"(gain {gain:+.3f}, spreads {fs:.3f} / {cs:.3f})")
    if f in none["rmse"] and b in none["rmse"]:
        ratio = none["rmse"][f][0] / none["rmse"][b][0]
        rule = f"at or below {b}'s" if split == "unseen" else f"within 10% of {b}'s"
        ok = ratio <= 1.0 if split == "unseen" else ratio <= 1.10
        lines.append(f"- {f}'s RMSE {rule}: {f}/{b} = {ratio:.3f}: " + ("met" if ok else "missed"))
    if split == "unseen" and f in med and "teacher" in med:
        fm, tm = med[f][0], med["teacher"][0]
        lines.append(f"- {f}'s median-aligned AbsRel below the teacher's: {fm:.3f} against {tm:.3f}: "
                     + ("met" if fm < tm else "missed"))
    if split == "test" and b in none["abs_rel"] and "teacher" in none["abs_rel"]:
        ra = none["abs_rel"][b][0] / none["abs_rel"]["teacher"][0]
        rr = none["rmse"][b][0] / none["rmse"]["teacher"][0]
        lines.append(f"- {b} reaches its teacher (within 10%): AbsRel {b}/teacher = {ra:.3f}, RMSE {rr:.3f}: "
                     + ("met" if max(ra, rr) <= 1.10 else "missed: the schedule is too short to compare end points"))
    if g in none["abs_rel"] and c in none["abs_rel"]:
        # matched: no worse than c by more than c's spread (a g that beats c has matched it)
        (gm, _, _), (cm, cs, _) = none["abs_rel"][g], none["abs_rel"][c]
        lines.append(f"- 1/6 of the sims ({g}) matches {c}: AbsRel {gm:.3f} against {cm:.3f} +- {cs:.3f}: "
                     + ("met" if gm - cm <= max(cs, 1e-9) else "missed"))
    return lines


def all_target_lines(entries: list[dict], split: str) -> list[str]:
    """The targets for the rows b, c, f, g and, where run, for the same roles at the long schedule and
    at the end points."""
    lines = target_lines(entries, split)
    for name, ids in {f"At {LONG_STEPS} steps": LONG_IDS, **END_POINT_IDS}.items():
        more = target_lines(entries, split, ids)
        if more:
            lines += ["", f"{name} ({', '.join(f'{k} as {v}' for k, v in ids.items())}):", "", *more]
    return lines


def write_results(args: argparse.Namespace, p: Profile, out: Path, data: Path, table: dict[str, dict],
                  ids: dict[str, str], shown: dict[str, Path], minutes: float) -> list[str]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    command = f"python scripts/experiment_indoor.py --data {args.data} --profile {args.profile}" + \
        (" --variants" if args.variants else "") + (f" --rows {args.rows}" if args.rows else "") + \
        (f" --seeds {args.seeds}" if args.seeds != ",".join(map(str, SEEDS)) else "") + \
        (" --report-only" if args.report_only else "")
    entries = result_entries(table, ids)
    first = next(iter(table.values()))
    models = {ids[label]: {k: row[k] for k in ("params", "macs", "cpu_ms") if k in row} for label, row in first.items()}
    # rows of different teacher fits (another CPU's bf16 kernels, a refit) are not comparable: say which
    teacher = shards.sha256_file(out / TEACHER_FILE)
    (out / "results.json").write_text(json.dumps({"data": data.name, "profile": args.profile, "commit": commit,
                                                  "command": command, "teacher_sha256": teacher,
                                                  "minutes": round(minutes, 1),
                                                  "rows": entries, "models": models}, indent=1))
    lines = [f"# Results: distilling an indoor depth teacher without its data ({args.profile} profile)", "",
             f"Command: `{command}`; commit {commit}; data {data.name}; "
             f"{minutes:.0f} minutes; input {p.size}; {p.steps} student steps of batch {p.batch} (a try with another "
             "schedule names it in its label); "
             f"{p.n_sim} simulated images (seed 0); training seeds 0 unless stated; teacher sha256 {teacher[:12]} "
             "(rows of another teacher fit compare only with each other).", ""]
    for split in table:
        lines += [f"## split={split}", "", f"NYU protocol on split={split} (Eigen crop, 1e-3 to 10 m), per image then "
                  "averaged.", "", *metrics_table(table[split]), "", "Per scene, AbsRel without alignment:", "",
                  *per_scene_table(table[split]), "", f"Training seeds {args.seeds} (how many in brackets): mean +- "
                  "spread (sample standard deviation):", "", *seed_table(entries, split), "", "Targets:", "",
                  *all_target_lines(entries, split), ""]
        frames = prediction_figure(shown, data, p.size, out / f"figure-{split}.png", split)
        lines += [f"`figure-{split}.png`: depth predicted by each model (columns: {', '.join(shown)}) on the "
                  f"{split} frames " + ", ".join(frames) + "; each row coloured over the teacher's 2nd-98th "
                  "percentile, near bright.", ""]
    lines += ["Same test images for every model (RGB | ground truth | prediction | error): "
              + ", ".join(f"`grid-{key}.png`" for key in shown), ""]
    (out / "results.md").write_text("\n".join(lines))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="an RGB-D folder whose index.csv has split=train and test (and "
                    "unseen: indoor-scenes)")
    ap.add_argument("--out", default="out/experiment")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    ap.add_argument("--variants", action="store_true", help="also run the variants of rows b, c and f (VARIANTS)")
    ap.add_argument("--rows", help="comma-separated row keys to run (e.g. f,v4); default: all rows")
    ap.add_argument("--seeds", default=",".join(map(str, SEEDS)),
                    help="training seeds of the seeded rows to run (e.g. 0); default: %(default)s")
    ap.add_argument("--report-only", action="store_true",
                    help="fit, render and train nothing: table the selected rows whose runs have finished")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    p, out, data = PROFILES[args.profile], Path(args.out), Path(args.data).resolve()
    show = not args.quiet
    t_start = time.time()
    rows, with_a = select_rows(ROWS + (VARIANTS if args.variants else []), args.rows, args.seeds, ap)

    teacher, sup = out / TEACHER_FILE, out / SUPERVISED_FILE
    if args.report_only:
        if not teacher.exists():
            ap.error(f"--report-only: {out} holds no fitted teacher (teacher.ckpt); run without it first")
        rows, unfinished = finished_rows(rows, out)
        if unfinished:
            print(f"--report-only: not finished, left out: {', '.join(r.id for r in unfinished)}", flush=True)
        models = {TEACHER_LABEL: ("teacher", teacher)}
        if with_a and sup.exists():
            models[SUPERVISED_LABEL] = ("a", sup)
        models.update({row.label: (row.id, out / f"run-{row.id}" / FINAL) for row in rows})
    else:
        models = train_all(p, out, data, rows, with_a, show)
    evaluate_and_report(args, p, out, data, models, t_start)


def train_all(p: Profile, out: Path, data: Path, rows: list[Row], with_a: bool,
              show: bool) -> dict[str, tuple[str, Path]]:
    """Fit the teacher (and a), prepare the images, train the rows: {label: (row id, model file)}."""
    print("== teacher", flush=True)
    teacher = out / TEACHER_FILE
    fit_teacher(FitConfig(data=str(data), out=str(teacher), arch="resnet18", input_size=p.size, split="train",
                          steps=p.teacher_steps, batch_size=p.batch, lr=2e-3, workers=2,
                          resume=partial_path(teacher).exists()), show_progress=show)
    models: dict[str, tuple[str, Path]] = {TEACHER_LABEL: ("teacher", teacher)}
    if with_a:
        print("== a: supervised student", flush=True)
        sup = out / SUPERVISED_FILE
        fit_teacher(FitConfig(data=str(data), out=str(sup), arch="mobilenetv2", input_size=p.size, split="train",
                              steps=p.steps, batch_size=p.batch, lr=1e-3, workers=2,
                              resume=partial_path(sup).exists()), show_progress=show)
        models[SUPERVISED_LABEL] = ("a", sup)

    print("== data", flush=True)
    images = prepare_images(p, out, data, {row.images for row in rows}, show)
    base = TrainConfig(out="", teacher={"source": str(teacher), "input_size": p.size}, steps=p.steps,
                       batch_size=p.batch, workers=2, log_every=20, ckpt_every=100, warmup=max(1, p.steps // 20))
    for row in rows:
        print(f"== {row.label}", flush=True)
        models[row.label] = (row.id, train_row(row, base, images, out, show))
    return models


def evaluate_and_report(args: argparse.Namespace, p: Profile, out: Path, data: Path,
                        models: dict[str, tuple[str, Path]], t_start: float) -> None:
    print("== evaluation", flush=True)
    table: dict[str, dict] = {}
    for k, split in enumerate(data_splits(data)):
        table[split] = {}
        for label, (row_id, path) in models.items():
            # a model evaluated by an earlier call is not redone
            cached = path.with_name(path.name + f".eval-{split}.json")
            if cached.exists() and cached.stat().st_mtime > path.stat().st_mtime:
                table[split][label] = json.loads(cached.read_text())
                continue
            grid = out / f"grid-{row_id}.png" if "-s" not in row_id and split == "test" else None
            table[split][label] = measure_model(path, data, p.size, protocol="nyu", split=split, grid_path=grid,
                                                latency=k == 0)
            cached.write_text(json.dumps(table[split][label]))
    shown = {row_id: path for row_id, path in models.values() if "-s" not in row_id}
    ids = {label: row_id for label, (row_id, _) in models.items()}
    lines = write_results(args, p, out, data, table, ids, shown, (time.time() - t_start) / 60)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
