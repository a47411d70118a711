#!/usr/bin/env python
"""The method end to end on built-in defaults, with only the project: the README's first command.

1. The teacher: the shipped stand-in (assets/teacher/: a ResNet-18 that scripts/make_teacher.py
   fitted with ground truth on simulated rooms; its sha256 is checked first), or yours (--teacher).
   Render the held-out target-domain frames (seed 2000: rooms the teacher never saw).
2. Render the simulated training set for distillation (seed 0: other rooms): the teacher's own
   data is never used.
3. Distill a ResNet-10 student, started from the teacher's own weights (its stem, the first block of
   each stage and its decoder), with the full method (object-wise mixing + transformation network
   + BN-statistics loss), and one with plain KD on the same sims (what the method adds); both also
   match the teacher's encoder features (feature hints).
4. Evaluate teacher, students and the student before distillation on the held-out frames, and write
   OUT/report.md with the metrics table (with parameters, MACs, CPU latency) and picture grids.

    python scripts/demo.py [--out out/demo] [--steps 900] [--teacher YOUR.ckpt]

10-20 minutes on 2 CPU cores with native bf16 (README). Every step is a `simgen` or `distill` command, printed
as a user would type it; rerunning the demo skips what is finished (each command checks its own outputs).
"""

from __future__ import annotations

import distill  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from distill.checkpoint import CheckpointError, load_model, save_checkpoint
from distill.cli import main as distill_main
from distill.compare import comparison_grid, measure_model, metrics_table
from distill.networks import ARCHITECTURES, build_depth_model, inherit_weights, require_matching_features
from distill.config import INIT_STUDENT, STUDENT_BN
from distill.standin import RENDER_ARGS, RESOLUTION, STANDIN_CKPT, TEST_SEED, verify_standin
from simgen.cli import main as simgen_main
from simgen.options import ConfigError, Size

# The student's output range (build_depth_model's defaults, the stand-in's), for the reference before distillation.
MIN_DEPTH, MAX_DEPTH = 0.1, 10.0
# The students: a ResNet-10 started from the teacher's own weights (its stem, the first block of
# each stage and its decoder; distill/networks/inherit.py)
STUDENT, INIT = "resnet10", "teacher"
# Both students also match the teacher's encoder features (distill train --w-feature). Chosen on 128
# validation rooms of seed 3000, not the test rooms: the full method read AbsRel 0.252 without, 0.243 at
# 1, 0.240 at 3, 0.237 at 10, 0.238 at 30 (the stand-in before the shipped one, which read 0.215 there;
# 768 sims, 900 steps at 5e-4).
W_FEATURE = 10.0


def stage(name: str) -> None:
    print(f"\n=== {name} ===", flush=True)


def command(tool: str, *argv: object) -> None:
    """Run one CLI command in-process, exactly as a user types it (and show it)."""
    args = [str(a) for a in argv]
    print(f"$ {tool} {shlex.join(args)}", flush=True)
    rc = (simgen_main if tool == "simgen" else distill_main)(args)
    if rc:
        sys.exit(rc)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/demo")
    ap.add_argument("--teacher", type=Path, help="your teacher: a ResNet-18/34 checkpoint of this project; another "
                    "checkpoint or a TorchScript export with --student mobilenetv2 --init-student random --w-feature 0 "
                    "(default: the shipped stand-in, checksum verified)")
    ap.add_argument("--steps", type=int, default=900, help="student training steps")
    # chosen for the shipped teacher on 128 validation rooms of seed 3000, not the test rooms (that teacher reads
    # AbsRel 0.171 there): the distilled ResNet-10 read 0.207 at 5e-4, 0.199 at 1e-3, 0.195 at 2e-3
    ap.add_argument("--lr", type=float, default=2e-3, help="students' learning rate")
    ap.add_argument("--plain-kd", choices=("on", "off"), default="on",
                    help="also distil a plain-KD student on the same sims, for comparison (default on)")
    ap.add_argument("--w-feature", type=float, default=W_FEATURE, help="weight of both students' feature hints "
                    "(distill train --w-feature; 0 = off)")
    ap.add_argument("--student", choices=ARCHITECTURES, default=STUDENT, help="the students' architecture")
    ap.add_argument("--init-student", choices=INIT_STUDENT, default=INIT, help="where the students' weights start "
                    "(distill train --init-student)")
    ap.add_argument("--student-bn", choices=STUDENT_BN, default="batch", help="the students' BatchNorm statistics "
                    "(distill train --student-bn; teacher needs --init-student teacher)")
    # on the validation rooms of seed 3000 the distilled ResNet-10 from the previous stand-in read AbsRel 0.206 on
    # 768 sims against 0.219 on 256; rendering 512 more takes about 2-3 minutes
    ap.add_argument("--n-sim", type=int, default=768, help="simulated frames for distillation")
    ap.add_argument("--n-test", type=int, default=32, help="held-out target-domain frames")
    ap.add_argument("--resolution", default=RESOLUTION, help="render resolution WIDTHxHEIGHT (just above the input "
                    "size: pixels the models never see only cost render time)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args()
    if args.student_bn != "batch" and args.init_student != "teacher":
        ap.error(f"--student-bn {args.student_bn} keeps the statistics the student starts with; give --init-student "
                 "teacher")
    return args


def prepare_teacher(args: argparse.Namespace) -> tuple[Path, Size, torch.nn.Module]:
    """The teacher file (the stand-in's checksum verified), its input size, and the student before
    distillation; what distill train would refuse after the renders is said before them."""
    teacher = args.teacher or STANDIN_CKPT
    if args.teacher is None:
        try:
            card = verify_standin()
        except CheckpointError as e:
            sys.exit(f"demo: {e}")
        made = card["test"]["metrics"]["none"]
        print(f"stand-in teacher {teacher.name}: sha256 verified; made by `{card['command']}` ({card['trained_on']}); "
              f"AbsRel {made['abs_rel']:.3f} on the {card['test']['frames']} held-out frames when made", flush=True)
    teacher_model, teacher_info = load_model(teacher)
    torch.manual_seed(0)  # the reference's random weights, the same in every run
    start = build_depth_model(args.student, MIN_DEPTH, MAX_DEPTH)
    try:
        if args.init_student == "teacher":
            inherit_weights(start, teacher_model)
        if args.w_feature > 0:
            require_matching_features(start, teacher_model)
    except ConfigError as e:
        sys.exit(f"demo: {e}")
    if teacher_info.input_size is None:
        sys.exit(f"demo: {teacher} does not say its input size (export it with distill export, which writes it)")
    return teacher, teacher_info.input_size, start


def distil(args: argparse.Namespace, out: Path, teacher: Path, sims: Path, name: str, *method: object) -> Path:
    """One `distill train` run of the demo's students (resumed where an earlier demo stopped)."""
    run = out / name
    resume = ["--resume"] if (run / "checkpoint.pt").exists() and not (run / "student.pt").exists() else []
    init = ["--student", args.student, "--init-student", args.init_student, "--w-feature", f"{args.w_feature:g}"]
    init += ["--student-bn", args.student_bn] if args.student_bn != "batch" else []
    command("distill", "train", "--shards", sims, "--teacher", teacher, "--out", run, "--steps", args.steps,
            "--batch-size", 8, "--lr", args.lr, "--workers", 1, "--log-every", 10, "--ckpt-every", 50, "--warmup", 20,
            *init, *method, *resume, *(["--quiet"] if args.quiet else []))
    return run / "student.pt"


def main() -> None:
    args = parse_args()
    out, t0 = Path(args.out), time.time()
    render = [*RENDER_ARGS, "--resolution", args.resolution, *(["--quiet"] if args.quiet else [])]

    stage("1/4 the teacher, and held-out frames of its domain")
    teacher, size, start = prepare_teacher(args)
    test = out / "target-test"
    command("simgen", "render", "--n", args.n_test, "--out", test, "--seed", TEST_SEED, "--samples-per-shard", 16, *render)

    stage("2/4 simulated training set (other rooms)")
    sims = out / "sims"
    command("simgen", "render", "--n", args.n_sim, "--out", sims, "--seed", 0, "--samples-per-shard", 32, "--workers", 2,
            *render)

    stage("3/4 distillation: mixing + transformation network + BN statistics"
          + (f" + the teacher's features as hints (x{args.w_feature:g})" if args.w_feature > 0 else ""))
    students = {"distilled": distil(args, out, teacher, sims, "run")}
    if args.plain_kd == "on":
        stage("3b/4 the same with plain KD (no mixing, no transformation network): what the method adds")
        students["plain KD"] = distil(args, out, teacher, sims, "run-plain-kd", "--mixing", "off", "--transform", "off")

    stage("4/4 evaluation on held-out target-domain frames")
    untrained = out / "untrained.pt"
    save_checkpoint(untrained, start, args.student, size, MIN_DEPTH, MAX_DEPTH)
    lines, table, ms = report(args, out, teacher, size, test, students, untrained, time.time() - t0)
    (out / "report.md").write_text("\n".join(lines))
    print("\n".join(table))
    print(f"CPU latency: teacher {ms[0]:.1f} ms, student {ms[1]:.1f} ms (speed-up {ms[0] / ms[1]:.2f}x)")
    print(f"\ndemo: report in {out / 'report.md'} ({(time.time() - t0) / 60:.1f} min)")


def measure_all(args: argparse.Namespace, out: Path, teacher: Path, size: Size, test: Path,
                students: dict[str, Path], untrained: Path) -> dict[str, dict]:
    """Metrics, size and latency of the teacher, the students and the student before distillation."""
    origin = ", from the teacher" if args.init_student == "teacher" else ""
    models = {"teacher (stand-in, ResNet-18)" if args.teacher is None else f"teacher ({teacher.name})": teacher,
              f"student ({args.student}{origin}, distilled)": students["distilled"]}
    if "plain KD" in students:
        models["student, plain KD on the same sims"] = students["plain KD"]
    models["student before distillation" + (" (the teacher's first blocks)" if origin else ", untrained")] = untrained
    rows = {name: measure_model(path, test, size, protocol="none", split=None) for name, path in models.items()}
    comparison_grid({"teacher": teacher, "student": students["distilled"]}, test, size, out / "grid.png")
    (out / "metrics.json").write_text(json.dumps({name: {"params": v["params"], "macs": v["macs"], "cpu_ms": v["cpu_ms"],
                                                         **{a: r["overall"] for a, r in v["eval"].items()}}
                                                  for name, v in rows.items()}, indent=1))
    return rows


def report(args: argparse.Namespace, out: Path, teacher: Path, size: Size, test: Path, students: dict[str, Path],
           untrained: Path, seconds: float) -> tuple[list[str], list[str], tuple[float, float]]:
    """OUT/report.md's lines, the metrics table, and the teacher's and the student's CPU ms."""
    rows = measure_all(args, out, teacher, size, test, students, untrained)
    names = list(rows)
    table = metrics_table(rows, columns=(("none", "abs_rel", "AbsRel"), ("none", "rmse", "RMSE (m)"),
                                         ("none", "a1", "delta1"), ("median", "abs_rel", "AbsRel (median-aligned)")))
    absrel = {name: v["eval"]["none"]["overall"]["abs_rel"] for name, v in rows.items()}
    teacher_ms, student_ms = rows[names[0]]["cpu_ms"], rows[names[1]]["cpu_ms"]
    summary = [f"The distilled student's AbsRel is {absrel[names[1]] / absrel[names[0]] - 1:+.0%} against the "
               f"teacher's ({absrel[names[1]]:.3f} against {absrel[names[0]]:.3f})"]
    if "plain KD" in students:
        summary.append(f"plain KD on the same sims and steps reaches {absrel[names[2]]:.3f} "
                       f"({absrel[names[2]] / absrel[names[0]] - 1:+.0%}): what mixing and the transformation network "
                       "add or cost here (both students have the same feature hints)")
    speed = (f"CPU latency per image at {size} (batch 1, median of 20 runs, this machine): teacher {teacher_ms:.1f} ms, "
             f"student {student_ms:.1f} ms, a speed-up of {teacher_ms / student_ms:.2f}x (MACs: "
             f"{rows[names[0]]['macs'] / rows[names[1]]['macs']:.1f}x fewer; parameters "
             f"{rows[names[0]]['params'] / rows[names[1]]['params']:.1f}x fewer).")
    lines = ["# Demo report: data-free distillation on built-in defaults", "",
             f"Made by `python scripts/demo.py --out {args.out}` in {seconds / 60:.1f} minutes "
             f"(students {args.steps} steps of 8 at learning rate {args.lr:g} on {args.n_sim} sims, input {size}; "
             f"feature hints x{args.w_feature:g}).", "",
             ("The teacher is the project's stand-in (`assets/teacher/`: a ResNet-18 that `scripts/make_teacher.py` "
              "fitted with ground truth on simulated rooms)" if args.teacher is None else f"The teacher is {teacher}") +
             "; the students never see its training data: they learn from the teacher's predictions on other "
             f"simulated rooms (`sims/`, seed 0). Test: {args.n_test} held-out rooms (`target-test/`, seed "
             f"{TEST_SEED}) with ground truth.", "", *table, "", "; ".join(summary) + ".", "", speed, "",
             "The same with your own teacher: `python scripts/demo.py --teacher YOUR.ckpt --out out/mine`, or directly "
             "`simgen render --n 50000 --out shards/` then `distill train --shards shards/ --teacher YOUR_MODEL.pt2 "
             "--out runs/s1` (`distill teacher-check YOUR_MODEL.pt2` first says what train will find).", "",
             "Held-out frames (RGB | ground truth | teacher | distilled student | the student's relative error, green "
             "0 to red 50% or more; depth near bright, far dark, over each frame's ground-truth range):", "",
             "![teacher and student](grid.png)", ""]
    return lines, table, (teacher_ms, student_ms)


if __name__ == "__main__":
    main()
