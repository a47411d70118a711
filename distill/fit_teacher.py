"""Supervised training of one of the project's architectures on RGB-D data: reference teachers
for tests, demos and experiments. Users who have a teacher never need it."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from distill.data import RGBDFolder, augment, resize_crop
from distill.networks import build_depth_model, count_params
from distill.runtime import (autocast, contiguous_state, describe_precision, memory_format, pick_device,
                             resolve_precision, to_memory_format)
from distill.train import lr_lambda


@dataclass
class FitConfig:
    data: str
    out: str
    arch: str = "resnet34"
    input_size: tuple[int, int] = (224, 320)
    depth_scale: float = 1000.0
    split: str | None = "train"
    min_depth: float = 0.1
    max_depth: float = 10.0
    steps: int = 2000
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    workers: int = 2
    device: str = "auto"
    precision: str = "auto"         # auto | fp32 | bf16 (distill/runtime.py)
    channels_last: bool = True


class _Augmented(Dataset):
    def __init__(self, base: RGBDFolder, size: tuple[int, int], seed: int):
        self.base, self.size, self.seed = base, size, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = self.base[i]
        # differs per epoch (the DataLoader reseeds torch per worker and epoch), fixed by the seed
        rng = random.Random(f"{self.seed}-{i}-{torch.initial_seed()}")
        t = {"rgb": item["rgb"], "depth": item["depth"], "inst": torch.zeros_like(item["depth"], dtype=torch.int64)}
        t = augment(resize_crop(t, self.size, rng), rng)
        return {"rgb": t["rgb"], "depth": t["depth"]}


def supervised_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Scale-invariant log loss (Eigen et al., lambda 0.85) on valid ground-truth pixels."""
    mask = gt > 0
    d = torch.log(pred[mask].clamp_min(1e-3)) - torch.log(gt[mask])
    return torch.sqrt((d ** 2).mean() - 0.85 * d.mean() ** 2 + 1e-8) * 10


def fit_teacher(cfg: FitConfig, show_progress: bool = True) -> dict[str, Any]:
    from tqdm import tqdm

    out = Path(cfg.out)
    if out.exists():
        raise FileExistsError(f"{out} exists; choose a new output file (nothing was overwritten)")
    device = pick_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)
    size = tuple(cfg.input_size)
    if min(size) < 32:
        raise ValueError(f"--input-size {size[0]}x{size[1]}: height and width must be at least 32")
    data = _Augmented(RGBDFolder(cfg.data, cfg.depth_scale, cfg.split), size, cfg.seed)
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True, drop_last=True, num_workers=cfg.workers,
                        generator=torch.Generator().manual_seed(cfg.seed), persistent_workers=cfg.workers > 0)
    model = to_memory_format(build_depth_model(cfg.arch, cfg.min_depth, cfg.max_depth).to(device), cfg.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(min(200, cfg.steps // 10 + 1), cfg.steps))
    print(f"fit-teacher {cfg.arch}: {count_params(model) / 1e6:.2f} M parameters, {len(data)} frames, {device}, "
          f"{describe_precision(cfg.precision, precision, device)}")
    step, loss = 0, torch.zeros(())
    with tqdm(total=cfg.steps, unit="step", disable=not show_progress) as bar:
        while step < cfg.steps:
            for batch in loader:
                with autocast(device, precision):
                    pred = model(batch["rgb"].to(device).contiguous(memory_format=memory_format(cfg.channels_last)))
                loss = supervised_loss(pred.float(), batch["depth"].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
                if step >= cfg.steps:
                    break
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model_arch": cfg.arch, "model": contiguous_state(model.state_dict()), "input_size": list(size),
                "model_range": {"min_depth": cfg.min_depth, "max_depth": cfg.max_depth},
                "fit_config": asdict(cfg)}, out)
    return {"steps": step, "loss": loss.item(), "out": str(out)}
