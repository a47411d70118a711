#!/usr/bin/env python
"""Make the stand-in teacher the demo ships (assets/teacher/), from the project alone.

1. Render the fit set: indoor rooms of every default type, seed 1000 (distill.standin's recipe).
2. Render the demo's held-out frames (seed 2000): the demo tests every model on the same ones.
3. `distill fit-teacher`: a ResNet-18 at 128x96, supervised with the rendered depth.
4. Write it with fp16 weights (half the bytes) and its card, teacher.json: the command, seeds,
   data recipe, fit time, metrics on the held-out frames and the sha256 the demo checks.

    python scripts/make_teacher.py [--frames 19200] [--steps 30000] [--work out/make-teacher]

The shipped file came from the defaults (teacher.json says how long it took and what it reached).
Every step is a `simgen` or `distill` command, printed; a rerun skips what is finished, and an
interrupted fit continues from its last saved state (`fit-teacher --resume`, every 250 steps).
"""

from __future__ import annotations

import distill  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from demo import command, stage

from distill.checkpoint import read_checkpoint
from distill.compare import measure_model
from distill.fit_teacher import partial_path
from distill.standin import FIT_SEED, RENDER_ARGS, RESOLUTION, STANDIN_CARD, STANDIN_CKPT, TEST_SEED, write_compact
from simgen.options import parse_size

LICENSE_TEXT = """# The stand-in teacher's license and provenance

`standin-resnet18.ckpt` is a depth model (ResNet-18 encoder, the project's decoder) made by
`python scripts/make_teacher.py` of this repository; `teacher.json` records the exact command,
seeds and measured metrics.

Trained on: only images this project rendered (`simgen render`, indoor rooms) from its built-in
asset library, which `scripts/make_assets.py` generates procedurally. No photograph, data set or
pretrained weights of anyone else went into it: the encoder starts from random weights.

License: MIT. Copyright (c) 2026 the depthdistill authors. Permission is hereby granted, free of
charge, to any person obtaining a copy of these weights, to deal in them without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies, subject to including this notice. THE WEIGHTS ARE PROVIDED "AS
IS", WITHOUT WARRANTY OF ANY KIND.

It is a stand-in for a user's own teacher, good on the project's simulated rooms only: it has never
seen a real image and reads real photographs poorly.
"""


def git_commit() -> str:
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1])
    return r.stdout.strip() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="out/make-teacher", help="folder for the renders and the full-precision fit")
    ap.add_argument("--frames", type=int, default=19200, help="rendered frames to fit on (the shipped file: AbsRel "
                    "0.148; 9600 frames and 10000 steps read 0.212, 4800 and 10000 0.259; docs/distill.md)")
    ap.add_argument("--n-test", type=int, default=32, help="held-out frames (the demo's --n-test)")
    ap.add_argument("--steps", type=int, default=30000)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--size", type=parse_size, default=parse_size("128x96"), help="input WIDTHxHEIGHT")
    ap.add_argument("--workers", type=int, default=2, help="render processes and data-loading workers")
    ap.add_argument("--dest", type=Path, default=STANDIN_CKPT, help="compact checkpoint to write; its card goes beside "
                    "it as teacher.json")
    ap.add_argument("--replace", action="store_true", help="overwrite an existing --dest (the shipped one is in git)")
    args = ap.parse_args()
    work, dest = Path(args.work), args.dest
    card = dest.with_name(STANDIN_CARD.name)
    if dest.exists() and not args.replace:
        ap.error(f"{dest} exists; give --replace to overwrite it, or another --dest (nothing was changed)")
    t0 = time.time()

    stage("1/3 renders: the fit set and the demo's held-out frames")
    fit_data, test_data, full = work / "fit", work / "test", work / "teacher-fp32.ckpt"
    command("simgen", "render", "--n", args.frames, "--out", fit_data, "--seed", FIT_SEED, "--samples-per-shard", 100,
            "--workers", args.workers, "--resolution", RESOLUTION, *RENDER_ARGS)
    command("simgen", "render", "--n", args.n_test, "--out", test_data, "--seed", TEST_SEED, "--samples-per-shard", 16,
            "--resolution", RESOLUTION, *RENDER_ARGS)

    stage("2/3 fit with ground truth")
    fit = ["fit-teacher", "--data", fit_data, "--out", full, "--arch", "resnet18", "--input-size", args.size,
           "--split", "all", "--steps", args.steps, "--batch-size", args.batch_size, "--lr", args.lr,
           "--workers", args.workers]
    command("distill", *fit, *(["--resume"] if partial_path(full).exists() else []))  # an interrupted fit goes on
    fit_seconds = read_checkpoint(full).get("fit_seconds")  # every sitting of a resumed fit; None: fitted before it was kept

    stage("3/3 compact copy, metrics on the held-out frames, card")
    digest = write_compact(full, dest)
    row = measure_model(dest, test_data, args.size, protocol="none", split=None, latency=False)
    metrics = {align: {k: round(v, 4) for k, v in r["overall"].items()} for align, r in row["eval"].items()}
    meta = {"file": dest.name, "sha256": digest, "arch": "resnet18", "input_size": list(args.size),
            "params": row["params"], "license": "MIT (LICENSE.md beside this file)",
            "trained_on": f"{args.frames} frames of `simgen render {' '.join(RENDER_ARGS)} --resolution {RESOLUTION} --seed {FIT_SEED}` "
                          "(built-in procedural assets only)",
            "command": "python " + " ".join(sys.argv), "fit_command": "distill " + " ".join(map(str, fit)),
            "commit": git_commit(), "fit_minutes": None if fit_seconds is None else round(fit_seconds / 60, 1),
            "test": {"frames": args.n_test, "render": f"--seed {TEST_SEED} {' '.join(RENDER_ARGS)} --resolution {RESOLUTION}",
                     "metrics": metrics}}
    card.write_text(json.dumps(meta, indent=1) + "\n")
    (dest.parent / "LICENSE.md").write_text(LICENSE_TEXT)
    none = metrics["none"]
    print(f"\nstand-in teacher {dest} ({dest.stat().st_size / 1e6:.1f} MB, sha256 {digest[:12]}...): on "
          f"{args.n_test} held-out frames AbsRel {none['abs_rel']:.3f}, RMSE {none['rmse']:.3f}, delta1 {none['a1']:.3f} "
          f"(this run {(time.time() - t0) / 60:.1f} min; the fit {meta['fit_minutes']} min over all its sittings)")


if __name__ == "__main__":
    main()
