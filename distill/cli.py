"""`distill`: distill a depth teacher into a small student from simulated shards, evaluate, export.

    distill train --shards shards/ --teacher teacher.pt --out runs/s1 [--steps 2000]
    distill train --shards shards/ --images my_photos/ --teacher teacher.pt2 --out runs/s2
    distill train --config runs/s1/config.json --out runs/s2    (the same run again)
    distill eval --model runs/s1/student.pt --data DIR [--protocol nyu] [--align median]
    distill export --model runs/s1/student.pt --format onnx|torchscript --out student.onnx
    distill fit-teacher --data DIR --out teacher.ckpt [--arch resnet34] [--input-size 320x224]
    distill mix-preview --shards shards/ --out mixed.png
    distill teacher-check teacher.pt2 [--shards shards/]     (what train would find)
    distill gap --teacher teacher.pt2 --shards shards/ [--real DIR] [--out gap.png]   (how far sims are)

Sizes are WIDTHxHEIGHT everywhere (as simgen's --resolution). --debug shows an error's traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from distill import __version__
from simgen.options import (ConfigError, Size, add_options, auto_on_off, given, parse_size, png_path, positive_int,
                            read_config_file, swapped_hint, typed)


def build_parser() -> argparse.ArgumentParser:
    """Flags are generated from the config dataclasses (simgen/options.py): each default and its
    help text live once, on the field."""
    from distill.evaluate import EvalConfig
    from distill.export import EXPORT_FORMATS
    from distill.fit_teacher import FitConfig
    from distill.mixing import MixConfig
    from distill.teacher import TeacherSpec
    from distill.train import TrainConfig

    p = argparse.ArgumentParser(prog="distill", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"distill {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="distill a teacher into a student on simgen shards (and/or unlabeled images)",
                       description="Trains on --shards (simgen datasets), --images (unlabeled images: plain KD on "
                                   "them), or both; one of them is required unless --config gives it. Every option is a "
                                   "field of distill.train.TrainConfig; OUT/config.json holds a run's values and "
                                   "`--config OUT/config.json --out NEW` reproduces it.")
    t.add_argument("--config", help="JSON config of an earlier run (OUT/config.json); flags given override it")
    add_options(t, TrainConfig)
    add_options(t, TeacherSpec, prefix="teacher-", required=("source",), required_note="required unless --config gives it")
    add_options(t, MixConfig, prefix="mix-")
    _add_common(t)

    e = sub.add_parser("eval", help="AbsRel, SqRel, RMSE, RMSE log, log10, delta1-3 on RGB-D data")
    add_options(e, EvalConfig, required=("model", "data"))
    _add_common(e)

    x = sub.add_parser("export", help="export a student to ONNX or TorchScript and check it")
    x.add_argument("--model", required=True, help="checkpoint of this project")
    x.add_argument("--format", choices=EXPORT_FORMATS, required=True)
    x.add_argument("--out", required=True, help="file to write")
    _add_common(x)

    f = sub.add_parser("fit-teacher", help="supervised training of a reference teacher on RGB-D data")
    add_options(f, FitConfig, required=("data", "out"))
    _add_common(f)

    c = sub.add_parser("teacher-check", help="load a teacher as train would: what it is and what it supports",
                       description="Exits 2 with the reason when `distill train` would fail with this teacher.")
    c.add_argument("teacher", help=".pt2 program, TorchScript or ONNX file, checkpoint of this project, or "
                   "package.module:factory")
    add_options(c, TeacherSpec, prefix="teacher-", skip=("source",))
    c.add_argument("--shards", help="simgen dataset whose first images the teacher runs on (default: built-in rooms)")
    c.add_argument("--count", type=positive_int, default=8, help="images (default 8)")
    c.add_argument("--transform", type=typed(auto_on_off), nargs="?", const="on", default="auto", metavar="auto|on|off",
                   help="as for train: on requires the transformation network (BN statistics reachable with "
                        "gradients); auto uses it where it can (default auto)")
    c.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    _add_common(c)

    m = sub.add_parser("mix-preview", help="picture of object-wise mixed samples")
    m.add_argument("--shards", action="append", required=True, help="simgen dataset directory (repeatable)")
    m.add_argument("--out", required=True, type=png_path, help="PNG file to write")
    m.add_argument("--count", type=positive_int, default=8, help="samples (default 8)")
    m.add_argument("--size", type=parse_size, default=Size(320, 224), help="WIDTHxHEIGHT of the crops (default 320x224)")
    m.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    add_options(m, MixConfig, prefix="mix-", skip=("prob",))
    _add_common(m)

    g = sub.add_parser("gap", help="how far sims are from what the teacher knows: BN distance, depth error, image "
                                   "statistics, a picture", description=gap_doc(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("--teacher", required=True, help="the teacher, as for train")
    add_options(g, TeacherSpec, prefix="teacher-", skip=("source",))
    g.add_argument("--shards", required=True, help="simgen dataset")
    g.add_argument("--real", help="RGB-D folder of the teacher's domain (rgb/ + depth/, index.csv, or a simgen dataset)")
    g.add_argument("--real-split", default="train", help="split of --real's index.csv (default train; 'all' for every row)")
    g.add_argument("--depth-scale", type=float, default=1000.0, help="--real's depth PNG units per metre (default 1000)")
    g.add_argument("--run", help="a distill run (directory or checkpoint) whose transformation network is measured too")
    g.add_argument("--n", type=positive_int, default=64, help="images per set (default 64)")
    g.add_argument("--out", type=png_path, help="PNG picture: per set, images | teacher depth | the set's depth")
    g.add_argument("--json", help="write the report as JSON")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    _add_common(g)
    return p


def gap_doc() -> str:
    from distill import gap

    return gap.__doc__


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error, not one line")


def _require(values: dict, names: tuple[str, ...], flags: dict[str, str]) -> None:
    missing = [flags[n] for n in names if not values.get(n)]
    if missing:
        raise ConfigError(f"the following arguments are required: {', '.join(missing)}")


def train_config_from_args(a: argparse.Namespace):
    """TrainConfig from --config FILE (if given) overridden by the flags that were typed."""
    from distill.mixing import MixConfig
    from distill.teacher import TeacherSpec
    from distill.train import TrainConfig

    base = read_config_file(a.config, TrainConfig) if a.config else {}
    values = {**base, **given(a, TrainConfig)}
    values["teacher"] = {**base.get("teacher", {}), **given(a, TeacherSpec, "teacher-")}
    values["mix"] = {**base.get("mix", {}), **given(a, MixConfig, "mix-")}
    if a.config and "resume" not in given(a, TrainConfig):
        values["resume"] = False  # a config file starts a new run unless --resume is typed
    if not values.get("shards") and not values.get("images"):
        raise ConfigError("the following arguments are required: --shards DIR and/or --images DIR")
    _require(values["teacher"], ("source",), {"source": "--teacher"})
    return TrainConfig(**values)


def _train(a: argparse.Namespace) -> int:
    from distill.train import train

    cfg = train_config_from_args(a)
    _init_distributed()
    summary = train(cfg, show_progress=not a.quiet)
    if summary.get("already_finished"):
        print(f"distill: {cfg.out} already holds this finished run ({summary['steps']} steps); nothing to do")
        return 0
    print(f"distill: {summary['steps']} steps; student in {Path(cfg.out) / 'student.pt'}; "
          f"data wait {100 * summary['data_wait_share']:.0f}% of step time")
    return 0


def _init_distributed() -> None:
    """Under torchrun (WORLD_SIZE > 1) join the process group: gloo on CPU, nccl on GPUs."""
    import os

    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def _load_model_flag(path: str, device: str = "cpu"):
    """load_model for --model: its errors name the flag."""
    from distill.checkpoint import CheckpointError, load_model

    try:
        return load_model(path, device)
    except CheckpointError as e:
        raise CheckpointError(f"--model {e}") from None


def _eval(a: argparse.Namespace) -> int:
    from distill.evaluate import EvalConfig, evaluate_model, format_metrics
    from distill.runtime import pick_device

    cfg = EvalConfig(**given(a, EvalConfig))
    _require(asdict(cfg), ("model", "data"), {"model": "--model", "data": "--data"})
    device = pick_device(cfg.device)
    model, info = _load_model_flag(cfg.model, device)
    size = cfg.input_size or info.input_size
    if size is None:
        raise ConfigError(f"{cfg.model}: input size unknown; pass --input-size WIDTHxHEIGHT")
    if cfg.input_size and info.input_size and swapped_hint(cfg.input_size, info.input_size):
        raise ConfigError(f"--input-size {cfg.input_size}: the model was trained at {info.input_size}"
                          + swapped_hint(cfg.input_size, info.input_size))
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for metrics.json and grid.png")
    out.mkdir(parents=True, exist_ok=True)
    result = evaluate_model(model, cfg.data, size, device, cfg.protocol, cfg.align, cfg.depth_scale, cfg.split,
                            grid_path=out / "grid.png", precision=cfg.precision)
    result.update(model=cfg.model, data=cfg.data, input_size=list(size))
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    print(format_metrics(result))
    print(f"distill: wrote {out / 'metrics.json'} and {out / 'grid.png'} (RGB | ground truth | prediction | error)")
    return 0


def _export(a: argparse.Namespace) -> int:
    from distill.export import export_model

    model, info = _load_model_flag(a.model)
    if info.arch is None:
        raise ConfigError(f"--model {a.model} is already an exported TorchScript model; export from the checkpoint "
                          "it came from (e.g. runs/s1/student.pt)")
    if Path(a.out).is_dir():
        raise ConfigError(f"--out {a.out} is a directory; give the file to write (e.g. {Path(a.out) / 'student.onnx'})")
    spec = export_model(model, info.input_size, a.out, a.format)
    w, h = info.input_size
    print(f"distill: wrote {a.out} ({a.format}); input float32 Bx3x{h}x{w} RGB in [0,1], output depth "
          f"in metres; largest difference to the checkpoint {spec['max_abs_diff']:.2e} m "
          f"(relative {spec['max_rel_diff']:.2e})")
    return 0


def _fit(a: argparse.Namespace) -> int:
    from distill.fit_teacher import FitConfig, fit_teacher

    values = given(a, FitConfig)
    _require(values, ("data", "out"), {"data": "--data", "out": "--out"})
    summary = fit_teacher(FitConfig(**values), show_progress=not a.quiet)
    if summary.get("already_finished"):
        print(f"distill: {summary['out']} already holds this fitted teacher; nothing to do")
        return 0
    print(f"distill: teacher checkpoint {summary['out']} after {summary['steps']} steps (loss {summary['loss']:.3f})")
    return 0


def _teacher_check(a: argparse.Namespace) -> int:
    from distill.runtime import pick_device
    from distill.teacher import TeacherSpec
    from distill.teacher_check import check, format_report

    spec = TeacherSpec(**{**given(a, TeacherSpec, "teacher-"), "source": a.teacher})
    report = check(spec, a.shards, a.count, pick_device(a.device))
    print(format_report(report))
    full = a.transform != "off" and not report["bn_problem"]
    if report["bn_problem"] and a.transform != "off":
        print(f"distill: {'error' if a.transform == 'on' else 'note'}: {report['bn_problem']}", file=sys.stderr)
        if a.transform == "on":
            return 2
    print("distill: teacher ok for " + ("the full method" if full else "plain KD with object-wise mixing"))
    return 0


def _gap(a: argparse.Namespace) -> int:
    from distill.gap import format_gap, gap, gap_picture, public
    from distill.runtime import pick_device
    from distill.teacher import TeacherSpec

    spec = TeacherSpec(**{**given(a, TeacherSpec, "teacher-"), "source": a.teacher})
    report = gap(spec, a.shards, a.real, None if a.real_split == "all" else a.real_split, a.depth_scale, a.run, a.n,
                 device=pick_device(a.device))
    print(format_gap(report))
    if a.out:
        gap_picture(report, a.out)
        print(f"distill: wrote {a.out} (per set: images | teacher depth | the set's depth)")
    if a.json:
        Path(a.json).write_text(json.dumps(public(report), indent=1))
    return 0


def _mix_preview(a: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from distill.data import ShardStream
    from distill.mixing import MixConfig, mix_objects
    from simgen.preview import colorize_depth, colorize_instances

    stream = ShardStream(a.shards, a.size.hw, seed=a.seed, buffer=16, augment=False, epochs=1)
    items = [it for _, it in zip(range(a.count), iter(stream))]
    batch = {k: torch.stack([it[k] for it in items]) for k in ("rgb", "depth", "inst")}
    rgb, depth, inst, pasted = mix_objects(batch["rgb"], batch["depth"], batch["inst"],
                                           MixConfig(**{**given(a, MixConfig, "mix-"), "prob": 1.0}),
                                           torch.Generator().manual_seed(a.seed))
    rows = []
    for i in range(len(items)):
        before = (batch["rgb"][i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        after = (rgb[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        rows.append(np.concatenate([before, after, colorize_depth(depth[i, 0].numpy()),
                                    colorize_instances(inst[i, 0].numpy())], 1))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, 0)).save(a.out)
    print(f"distill: wrote {a.out}: original | mixed | mixed depth | mixed instances; "
          f"{100 * pasted.float().mean():.1f}% of pixels pasted")
    return 0


def user_errors() -> tuple[type[BaseException], ...]:
    """The project's own error types: what a user can fix, reported as one line."""
    from distill.checkpoint import CheckpointError
    from distill.data import DataError
    from distill.teacher import TeacherError
    from simgen.shards import ShardError

    return (ConfigError, TeacherError, ShardError, CheckpointError, DataError, FileExistsError, FileNotFoundError,
            PermissionError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"train": _train, "eval": _eval, "export": _export, "fit-teacher": _fit, "mix-preview": _mix_preview,
                "teacher-check": _teacher_check, "gap": _gap}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print("\ndistill: interrupted; the last checkpoint is kept (--resume continues)", file=sys.stderr)
        return 130
    except user_errors() as e:
        if args.debug:
            raise
        print(f"distill: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
