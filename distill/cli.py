"""`distill`: distil a depth teacher into a small student from simulated shards, evaluate, export.

\b
    distill train --shards shards/ --teacher teacher.pt --out runs/s1 [--steps 2000]
    distill train --config runs/s1/config.json --out runs/s2    (the same run again)
    distill eval --model runs/s1/student.pt --data DIR [--protocol nyu] [--align median]
    distill export --model runs/s1/student.pt --format onnx|torchscript --out student.onnx
    distill fit-teacher --data DIR --out teacher.ckpt [--arch resnet34] [--input-size 320x224]
    distill mix-preview --shards shards/ --out mixed.png
    distill teacher-check teacher.pt2 [--shards shards/]     (what train would find)
    distill gap --teacher teacher.pt2 --shards shards/ [--real DIR] [--out gap.png]

Sizes are WIDTHxHEIGHT everywhere. --debug shows an error's traceback. Shell completion (bash; zsh
and fish likewise): eval "$(_DISTILL_COMPLETE=bash_source distill)".
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import click

from distill import __version__
from distill.config import TrainConfig, drop_retired
from distill.evaluate import EvalConfig
from distill.export import EXPORT_FORMATS, spec_path
from distill.fit_teacher import FitConfig
from distill.mixing import MixConfig
from distill.teacher import TeacherSpec
from simgen.options import (Choice, ConfigError, Parsed, Size, click_options, given, parse_size, png_path, positive_int,
                            read_config_file, run_cli, show_all_options, swapped_hint)
from simgen.runs import require_writable

POSITIVE = Parsed(positive_int, "N")
PNG = Parsed(png_path, "PNG")
DEVICE_HELP = "auto, cpu, cuda or cuda:N"


def common(fn: Callable) -> Callable:
    """--quiet and --debug, on every command."""
    fn = click.option("--debug", is_flag=True, help="show the traceback of an error, not one line")(fn)
    return click.option("--quiet", is_flag=True, help="no progress bars")(fn)


@click.group(help=__doc__, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
@click.version_option(__version__, prog_name="distill")
def cli() -> None:
    pass


@cli.command(help="Distil a teacher into a student on simgen shards and/or unlabeled images. Every option is a "
                  "field of distill.config.TrainConfig; OUT/config.json holds a run's values and --config reads "
                  "it back. Expert options (loss weights, schedule, mixing): --help-all, docs/distill.md.")
@click.option("--config", help="JSON config of an earlier run; flags typed override it")
@click_options(TrainConfig)
@click_options(TeacherSpec, prefix="teacher-", required=("source",), required_note="required unless --config")
@click_options(MixConfig, prefix="mix-")
@click.option("--help-all", is_flag=True, expose_value=False, is_eager=True, callback=show_all_options,
              help="this help with the expert options too")
@common
def train(**a: Any) -> int:
    from distill.train import train as run_training

    cfg = train_config_from_args()
    _init_distributed()
    summary = run_training(cfg, show_progress=not a["quiet"])
    if summary.get("already_finished"):
        print(f"distill: {cfg.out} already holds this finished run ({summary['steps']} steps); nothing to do")
        return 0
    print(f"distill: {summary['steps']} steps; student in {Path(cfg.out) / 'student.pt'}; "
          f"data wait {100 * summary['data_wait_share']:.0f}% of step time")
    return 0


def train_config_from_args(ctx: click.Context | None = None) -> TrainConfig:
    """TrainConfig from --config FILE (if given) overridden by the flags that were typed."""
    ctx = ctx or click.get_current_context()
    path = ctx.params.get("config")
    base = read_config_file(path, TrainConfig, clean=drop_retired) if path else {}
    values = {**base, **given(TrainConfig, ctx=ctx)}
    values["teacher"] = {**base.get("teacher", {}), **given(TeacherSpec, "teacher-", ctx)}
    values["mix"] = {**base.get("mix", {}), **given(MixConfig, "mix-", ctx)}
    if path and "resume" not in given(TrainConfig, ctx=ctx):
        values["resume"] = False  # a config file starts a new run unless --resume is typed
    if not values.get("shards") and not values.get("images"):
        raise ConfigError("the following arguments are required: --shards DIR and/or --images DIR")
    _require(values["teacher"], ("source",), {"source": "--teacher"})
    return TrainConfig(**values)


def parse_train_config(argv: list[str]) -> TrainConfig:
    """The TrainConfig `distill train ARGV` would run (for tests and scripts)."""
    with cli.commands["train"].make_context("train", list(argv)) as ctx:
        return train_config_from_args(ctx)


def _require(values: dict, names: tuple[str, ...], flags: dict[str, str]) -> None:
    missing = [flags[n] for n in names if not values.get(n)]
    if missing:
        raise ConfigError(f"the following arguments are required: {', '.join(missing)}")


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


@cli.command(name="eval", help="AbsRel, SqRel, RMSE, RMSE log, log10, delta1-3 on RGB-D data.")
@click_options(EvalConfig, required=("model", "data"))
@common
def evaluate(**_: Any) -> int:
    from distill.evaluate import evaluate_model, format_metrics
    from distill.runtime import pick_device

    cfg = EvalConfig(**given(EvalConfig))
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
    require_writable(out, "--out", directory=True)
    result = evaluate_model(model, cfg.data, size, device, cfg.protocol, cfg.align, cfg.depth_scale, cfg.split,
                            grid_path=out / "grid.png", precision=cfg.precision, output=info.output)
    result.update(model=cfg.model, data=cfg.data, input_size=list(size))
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    print(format_metrics(result))
    print(f"distill: wrote {out / 'metrics.json'} and {out / 'grid.png'} (RGB | ground truth | prediction | error)")
    return 0


@cli.command(help="Export a student to ONNX (any height and width; --int8) or TorchScript, and check it against the "
                  "checkpoint.")
@click.option("--model", required=True, help="checkpoint of this project")
@click.option("--format", "fmt", required=True, type=Choice(EXPORT_FORMATS), help="export format")
@click.option("--out", required=True, help="file to write (and its spec, OUT.json, beside it)")
@click.option("--int8", is_flag=True, help="ONNX only: static int8 quantization, calibrated on sims")
@click.option("--calibration", help="simgen dataset for --int8's calibration  [default: the run's --shards]")
@click.option("--calibration-count", type=POSITIVE, default=64, show_default=True, help="images --int8 calibrates on")
@click.option("--check-size", "check_sizes", multiple=True, type=Parsed(parse_size, "WxH"),
              help="WIDTHxHEIGHT the ONNX export is checked at, 32x32 or more (repeatable)  "
                   "[default: 128x96, 320x240, 640x480]")
@click.option("--force", is_flag=True, help="replace an existing --out and its OUT.json")
@common
def export(model: str, fmt: str, out: str, int8: bool, calibration: str | None, calibration_count: int,
           check_sizes: tuple[Size, ...], force: bool, **_: Any) -> int:
    from distill.export import CHECK_SIZES, MIN_SIDE, export_model

    module, info = _load_model_flag(model)
    if info.arch is None:
        raise ConfigError(f"--model {model} is already an exported TorchScript model; export from the checkpoint "
                          "it came from (e.g. runs/s1/student.pt)")
    if Path(out).is_dir():
        raise ConfigError(f"--out {out} is a directory; give the file to write (e.g. {Path(out) / 'student.onnx'})")
    for size in check_sizes:
        if min(size) < MIN_SIDE:
            raise ConfigError(f"--check-size {size}: the model takes at least {MIN_SIDE}x{MIN_SIDE}")
    existing = [str(p) for p in (Path(out), spec_path(out)) if p.exists()]
    if existing and not force:
        raise FileExistsError(f"{' and '.join(existing)} exist(s); choose another --out, or pass --force to replace "
                              "(nothing was written)")
    require_writable(out, "--out")
    images = _calibration_images(model, fmt, calibration, calibration_count, info.input_size) if int8 else None
    spec = export_model(module, info.input_size, out, fmt, info.output, (info.min_depth, info.max_depth), images,
                        tuple(check_sizes) or CHECK_SIZES)
    meaning, checked = spec["output"], ", ".join(f"{k} {v['max_abs_diff']:.1e}" for k, v in spec["checked"].items())
    print(f"distill: wrote {out} ({fmt}{', int8' if int8 else ''}); input float32 {'x'.join(map(str, spec['input']['shape']))}"
          f" RGB in [0,1], output {meaning['name']}: {meaning['kind']} ({meaning['unit']}); largest difference to "
          f"the checkpoint at {checked}")
    return 0


def _calibration_images(model: str, fmt: str, calibration: str | None, count: int, size: Size):
    """--int8's calibration images: the first of --calibration, or of the run's own shards."""
    from distill.checkpoint import read_checkpoint
    from distill.data import first_samples
    from simgen.shards import load_manifest
    from simgen.store import is_url, location

    if fmt != "onnx":
        raise ConfigError("--int8 quantizes an ONNX export: use --format onnx")
    sources = [calibration] if calibration else (read_checkpoint(model).get("config") or {}).get("shards") or []
    found = [s for s in sources if (is_url(s) or Path(s).is_dir()) and load_manifest(location(s))]
    if not found:
        said = f"--calibration {calibration} is not a simgen dataset" if calibration else (
            f"{model} records no simgen dataset that is still there" + (f" ({', '.join(sources)})" if sources else ""))
        raise ConfigError(f"--int8 needs calibration images: {said}; give --calibration DIR (a simgen dataset, e.g. "
                          "the run's --shards)")
    return first_samples(found[0], size.hw, count)["rgb"]


@cli.command(name="fit-teacher", help="Supervised training of a reference teacher on RGB-D data.")
@click_options(FitConfig, required=("data", "out"))
@common
def fit(quiet: bool, **_: Any) -> int:
    from distill.fit_teacher import fit_teacher

    values = given(FitConfig)
    _require(values, ("data", "out"), {"data": "--data", "out": "--out"})
    summary = fit_teacher(FitConfig(**values), show_progress=not quiet)
    if summary.get("already_finished"):
        print(f"distill: {summary['out']} already holds this fitted teacher; nothing to do")
        return 0
    print(f"distill: teacher checkpoint {summary['out']} after {summary['steps']} steps (loss {summary['loss']:.3f})")
    return 0


@cli.command(name="teacher-check", help="Load a teacher as train would: what it is and what it supports. Exits 2 "
                                        "with the reason when `distill train` would fail with it.")
@click.argument("teacher")
@click_options(TeacherSpec, prefix="teacher-", skip=("source",))
@click.option("--shards", help="dataset whose first images it runs on (default: built-in rooms)")
@click.option("--count", type=POSITIVE, default=8, show_default=True, help="images")
@click.option("--transform", type=Choice(["auto", "on", "off"]), is_flag=False, flag_value="on",
              default="auto", show_default=True, help="as for train: on requires T")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@common
def teacher_check(teacher: str, shards: str | None, count: int, transform: str, device: str, **_: Any) -> int:
    from distill.runtime import pick_device
    from distill.teacher_check import check, format_report

    spec = TeacherSpec(**{**given(TeacherSpec, "teacher-"), "source": teacher})
    report = check(spec, shards, count, pick_device(device))
    print(format_report(report))
    full = transform != "off" and not report["bn_problem"]
    if report["bn_problem"] and transform != "off":
        print(f"distill: {'error' if transform == 'on' else 'note'}: {report['bn_problem']}", file=sys.stderr)
        if transform == "on":
            return 2
    print("distill: teacher ok for " + ("the full method" if full else "plain KD with object-wise mixing"))
    return 0


@cli.command(help="How far sims are from what the teacher knows: BN distance, depth error, image statistics, a "
                  "picture (docs/distill.md).")
@click.option("--teacher", required=True, help="the teacher, as for train")
@click_options(TeacherSpec, prefix="teacher-", skip=("source",))
@click.option("--shards", required=True, help="simgen dataset")
@click.option("--real", help="RGB-D folder of the teacher's domain")
@click.option("--real-split", default="train", show_default=True, help="split of --real ('all': every row)")
@click.option("--depth-scale", type=float, default=1000.0, show_default=True, help="--real's depth units per metre")
@click.option("--run", help="a distill run whose T is measured too")
@click.option("--n", type=POSITIVE, default=64, show_default=True, help="images per set")
@click.option("--out", type=PNG, help="PNG picture: images | teacher depth | the set's depth")
@click.option("--json", "json_path", help="write the report as JSON")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@common
def gap(teacher: str, shards: str, real: str | None, real_split: str, depth_scale: float, run: str | None, n: int,
        out: str | None, json_path: str | None, device: str, **_: Any) -> int:
    from distill.gap import format_gap, gap as measure_gap, gap_picture, public
    from distill.runtime import pick_device

    for flag, path in (("--out", out), ("--json", json_path)):
        if path:
            require_writable(path, flag)
    spec = TeacherSpec(**{**given(TeacherSpec, "teacher-"), "source": teacher})
    report = measure_gap(spec, shards, real, None if real_split == "all" else real_split, depth_scale, run, n,
                         device=pick_device(device))
    print(format_gap(report))
    if out:
        gap_picture(report, out)
        print(f"distill: wrote {out} (per set: images | teacher depth | the set's depth)")
    if json_path:
        Path(json_path).write_text(json.dumps(public(report), indent=1))
    return 0


@cli.command(name="mix-preview", help="Picture of object-wise mixed samples.")
@click.option("--shards", multiple=True, required=True, help="simgen dataset folder (repeatable)")
@click.option("--out", required=True, type=PNG, help="PNG file to write")
@click.option("--count", type=POSITIVE, default=8, show_default=True, help="samples")
@click.option("--size", type=Parsed(parse_size, "WxH"), default="320x224", show_default=True,
              help="WIDTHxHEIGHT of the crops")
@click.option("--seed", type=int, default=0, show_default=True, help="seed")
@click_options(MixConfig, prefix="mix-", skip=("prob",), experts=True)
@common
def mix_preview(shards: tuple[str, ...], out: str, count: int, size: Size, seed: int, **_: Any) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from distill.data import ShardStream
    from distill.mixing import mix_objects
    from simgen.preview import colorize_depth, colorize_instances

    require_writable(out, "--out")
    stream = ShardStream(list(shards), size.hw, seed=seed, buffer=16, augment=False, epochs=1)
    items = [it for _, it in zip(range(count), iter(stream))]
    batch = {k: torch.stack([it[k] for it in items]) for k in ("rgb", "depth", "inst")}
    rgb, depth, inst, pasted = mix_objects(batch["rgb"], batch["depth"], batch["inst"],
                                           MixConfig(**{**given(MixConfig, "mix-"), "prob": 1.0}),
                                           torch.Generator().manual_seed(seed))
    rows = []
    for i in range(len(items)):
        before = (batch["rgb"][i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        after = (rgb[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        rows.append(np.concatenate([before, after, colorize_depth(depth[i, 0].numpy()),
                                    colorize_instances(inst[i, 0].numpy())], 1))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, 0)).save(out)
    print(f"distill: wrote {out}: original | mixed | mixed depth | mixed instances; "
          f"{100 * pasted.float().mean():.1f}% of pixels pasted")
    return 0


def user_errors() -> tuple[type[BaseException], ...]:
    """The project's own error types: what a user can fix, reported as one line."""
    from distill.checkpoint import CheckpointError
    from distill.data import DataError
    from distill.teacher import TeacherError
    from simgen.shards import ShardError
    from simgen.store import StoreError

    return (ConfigError, TeacherError, ShardError, StoreError, CheckpointError, DataError, FileExistsError,
            FileNotFoundError, PermissionError)


def main(argv: list[str] | None = None) -> int:
    return run_cli(cli, "distill", argv, user_errors, "the last checkpoint is kept (--resume continues)")


if __name__ == "__main__":
    sys.exit(main())
