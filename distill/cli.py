"""`distill`: distill a depth teacher into a small student from simulated shards, evaluate, export.

    distill train --shards shards/ --teacher teacher.pt --out runs/s1 [--steps 2000]
    distill eval --model runs/s1/student.pt --data DIR [--protocol nyu] [--align median]
    distill export --model runs/s1/student.pt --format onnx|torchscript --out student.onnx
    distill fit-teacher --data DIR --out teacher.ckpt [--arch resnet34]
    distill mix-preview --shards shards/ --out mixed.png
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from distill import __version__


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be HxW (e.g. 224x320), got {text!r}") from None
    return h, w


def _floats3(text: str) -> tuple[float, float, float]:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 3:
        raise argparse.ArgumentTypeError(f"must be three comma-separated numbers, got {text!r}")
    return vals  # type: ignore[return-value]


def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"must be on or off, got {text!r}")
    return text == "on"


def _add_speed_options(p: argparse.ArgumentParser, layout: bool = True) -> None:
    from distill.runtime import PRECISIONS

    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto (default): bf16 autocast where the device runs it natively (CUDA with bf16, a CPU with "
                        "avx512_bf16 or AMX), fp32 elsewhere; weights and checkpoints stay fp32")
    if layout:
        p.add_argument("--channels-last", type=_on_off, default=True,
                       help="NHWC memory layout for the networks and inputs on|off (default on: faster on CPUs and GPUs)")


def build_parser() -> argparse.ArgumentParser:
    from distill.networks import ARCHITECTURES

    p = argparse.ArgumentParser(prog="distill", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"distill {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="distill a teacher into a student on simgen shards")
    t.add_argument("--shards", action="append", required=True, help="simgen dataset directory (repeatable)")
    t.add_argument("--teacher", required=True, help="TorchScript file, checkpoint of this project, or package.module:factory")
    t.add_argument("--teacher-weights", help="state dict for a package.module:factory teacher")
    t.add_argument("--teacher-input-size", type=_size, default=(224, 320), help="HxW the teacher takes (default 224x320)")
    t.add_argument("--teacher-mean", type=_floats3, default=(0.485, 0.456, 0.406), help="normalisation mean (default ImageNet)")
    t.add_argument("--teacher-std", type=_floats3, default=(0.229, 0.224, 0.225), help="normalisation std (default ImageNet)")
    t.add_argument("--teacher-output", choices=["metric", "inverse", "relative"], default="metric")
    t.add_argument("--student", choices=ARCHITECTURES, default="mobilenetv2")
    t.add_argument("--student-imagenet", help="torchvision ImageNet state dict file for the student's encoder")
    t.add_argument("--out", required=True, help="run directory (checkpoint.pt, student.pt, tb/)")
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--lr-transform", type=float, default=1e-4)
    t.add_argument("--mixing", type=_on_off, default=True, help="object-wise mixing on|off (default on)")
    t.add_argument("--depth-aware-mixing", action="store_true", help="paste only where the object is nearer")
    t.add_argument("--transform", type=_on_off, default=True, help="transformation network on|off (default on)")
    t.add_argument("--transform-steps", type=int, default=1, help="T updates per student update")
    t.add_argument("--w-bn", type=float, default=1.0)
    t.add_argument("--bn-loss", choices=["sum", "normalized"], default="sum",
                   help="BN term of T: plain sum over layers, or each layer normalised by its running statistics")
    t.add_argument("--w-content", type=float, default=10.0)
    t.add_argument("--w-adv", type=float, default=0.0, help="teacher-student disagreement weight for T (0 = off)")
    t.add_argument("--refresh-kd-target", action="store_true",
                   help="run T and the teacher again after T's update for the student's target (the paper's step; "
                        "one T and teacher pass more per step)")
    t.add_argument("--max-depth", type=float, default=10.0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    t.add_argument("--device", default="auto")
    _add_speed_options(t)
    t.add_argument("--val", help="RGB-D folder evaluated every --val-every steps")
    t.add_argument("--val-every", type=int, default=500)
    t.add_argument("--ckpt-every", type=int, default=500)
    t.add_argument("--log-every", type=int, default=20)
    t.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    t.add_argument("--quiet", action="store_true")

    e = sub.add_parser("eval", help="AbsRel, SqRel, RMSE, RMSE log, log10, delta1-3 on RGB-D data")
    e.add_argument("--model", required=True, help="checkpoint of this project or exported TorchScript")
    e.add_argument("--data", required=True, help="rgb/+depth/ folder, index.csv folder, or simgen dataset")
    e.add_argument("--split", default="test", help="index.csv split to use (default test; 'all' for every row)")
    e.add_argument("--depth-scale", type=float, default=1000.0, help="depth PNG units per metre (1000 NYU, 256 KITTI)")
    e.add_argument("--protocol", choices=["nyu", "kitti", "none"], default="nyu")
    e.add_argument("--align", choices=["none", "median", "scale-shift"], default="none")
    e.add_argument("--input-size", type=_size, help="model input HxW (default: from the checkpoint)")
    e.add_argument("--out", default="eval", help="folder for metrics.json and grid.png")
    e.add_argument("--device", default="auto")
    _add_speed_options(e, layout=False)

    x = sub.add_parser("export", help="export a student to ONNX or TorchScript and check it")
    x.add_argument("--model", required=True)
    x.add_argument("--format", choices=["onnx", "torchscript"], required=True)
    x.add_argument("--out", required=True)

    f = sub.add_parser("fit-teacher", help="supervised training of a reference teacher on RGB-D data")
    f.add_argument("--data", required=True)
    f.add_argument("--out", required=True, help="checkpoint file to write")
    f.add_argument("--arch", choices=ARCHITECTURES, default="resnet34")
    f.add_argument("--split", default="train")
    f.add_argument("--depth-scale", type=float, default=1000.0)
    f.add_argument("--input-size", type=_size, default=(224, 320))
    f.add_argument("--max-depth", type=float, default=10.0)
    f.add_argument("--steps", type=int, default=2000)
    f.add_argument("--batch-size", type=int, default=8)
    f.add_argument("--lr", type=float, default=1e-3)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--workers", type=int, default=2)
    f.add_argument("--device", default="auto")
    _add_speed_options(f)
    f.add_argument("--quiet", action="store_true")

    m = sub.add_parser("mix-preview", help="picture of object-wise mixed samples")
    m.add_argument("--shards", action="append", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--count", type=int, default=8)
    m.add_argument("--size", type=_size, default=(224, 320))
    m.add_argument("--depth-aware", action="store_true")
    m.add_argument("--seed", type=int, default=0)
    return p


def _train(a: argparse.Namespace) -> int:
    from distill.mixing import MixConfig
    from distill.train import TrainConfig, train

    teacher = {"source": a.teacher, "weights": a.teacher_weights, "input_size": tuple(a.teacher_input_size),
               "mean": tuple(a.teacher_mean), "std": tuple(a.teacher_std), "output": a.teacher_output}
    cfg = TrainConfig(shards=[str(Path(s).resolve()) for s in a.shards], out=a.out, teacher=teacher, student=a.student,
                      student_imagenet=a.student_imagenet, max_depth=a.max_depth, steps=a.steps, batch_size=a.batch_size,
                      lr=a.lr, lr_transform=a.lr_transform, mixing=a.mixing,
                      mix=asdict(MixConfig(depth_aware=a.depth_aware_mixing)), transform=a.transform,
                      transform_steps=a.transform_steps, w_bn=a.w_bn, bn_loss=a.bn_loss, w_content=a.w_content, w_adv=a.w_adv,
                      refresh_kd_target=a.refresh_kd_target, seed=a.seed, workers=a.workers, device=a.device,
                      precision=a.precision, channels_last=a.channels_last, val=a.val, val_every=a.val_every,
                      ckpt_every=a.ckpt_every, log_every=a.log_every, resume=a.resume)
    _init_distributed()
    summary = train(cfg, show_progress=not a.quiet)
    print(f"distill: {summary['steps']} steps; student in {Path(a.out) / 'student.pt'}; "
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


def _eval(a: argparse.Namespace) -> int:
    from distill.evaluate import evaluate_model, format_metrics, load_model_for_eval
    from distill.runtime import pick_device

    device = pick_device(a.device)
    model, size = load_model_for_eval(a.model, device)
    size = a.input_size or size
    if size is None:
        raise ValueError(f"{a.model}: input size unknown; pass --input-size HxW")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    result = evaluate_model(model, a.data, size, device, a.protocol, a.align, a.depth_scale,
                            None if a.split == "all" else a.split, grid_path=out / "grid.png", precision=a.precision)
    result.update(model=a.model, data=a.data, input_size=list(size))
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    print(format_metrics(result))
    print(f"distill: wrote {out / 'metrics.json'} and {out / 'grid.png'} (RGB | ground truth | prediction | error)")
    return 0


def _export(a: argparse.Namespace) -> int:
    import torch

    from distill.evaluate import load_model_for_eval
    from distill.export import export_model

    model, size = load_model_for_eval(a.model, torch.device("cpu"))
    spec = export_model(model, size, a.out, a.format)
    print(f"distill: wrote {a.out} ({a.format}); input float32 Bx3x{size[0]}x{size[1]} RGB in [0,1], output depth "
          f"in metres; largest difference to the checkpoint {spec['max_abs_diff']:.2e} m "
          f"(relative {spec['max_rel_diff']:.2e})")
    return 0


def _fit(a: argparse.Namespace) -> int:
    from distill.fit_teacher import FitConfig, fit_teacher

    cfg = FitConfig(data=a.data, out=a.out, arch=a.arch, input_size=a.input_size, depth_scale=a.depth_scale,
                    split=None if a.split == "all" else a.split, max_depth=a.max_depth, steps=a.steps,
                    batch_size=a.batch_size, lr=a.lr, seed=a.seed, workers=a.workers, device=a.device,
                    precision=a.precision, channels_last=a.channels_last)
    summary = fit_teacher(cfg, show_progress=not a.quiet)
    print(f"distill: teacher checkpoint {summary['out']} after {summary['steps']} steps (loss {summary['loss']:.3f})")
    return 0


def _mix_preview(a: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from distill.data import ShardStream
    from distill.mixing import MixConfig, mix_objects
    from simgen.preview import colorize_depth, colorize_instances

    stream = ShardStream(a.shards, a.size, seed=a.seed, buffer=16, augment=False, epochs=1)
    items = [it for _, it in zip(range(a.count), iter(stream))]
    batch = {k: torch.stack([it[k] for it in items]) for k in ("rgb", "depth", "inst")}
    rgb, depth, inst, pasted = mix_objects(batch["rgb"], batch["depth"], batch["inst"],
                                           MixConfig(prob=1.0, depth_aware=a.depth_aware),
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from distill.teacher import TeacherError
    from simgen.shards import ShardError

    handlers = {"train": _train, "eval": _eval, "export": _export, "fit-teacher": _fit, "mix-preview": _mix_preview}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print("\ndistill: interrupted; the last checkpoint is kept (--resume continues)", file=sys.stderr)
        return 130
    except (TeacherError, ShardError, FileExistsError, FileNotFoundError, ValueError, OSError, RuntimeError) as e:
        print(f"distill: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
