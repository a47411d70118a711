"""Where and how a run computes: device, numeric precision, memory layout, CPU threads.

One owner for these choices, shared by `distill train`, `fit-teacher` and `eval`.

Precision: `auto` picks bf16 autocast only where the hardware runs it natively (CUDA with bf16; a
CPU with the avx512_bf16 or AMX-bf16 instructions, read from the CPU's flags at run time) and fp32
elsewhere. On a CPU without them, bf16 is emulated: measured 16x slower than fp32 on an AVX2-only
AMD EPYC (docs/distill.md, Speed). Parameters, checkpoints and exports stay fp32 (autocast casts
per operation); BN statistics and losses are computed in fp32 by their callers.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Callable

import torch

from simgen.options import ConfigError

PRECISIONS = ("auto", "fp32", "bf16")
# CPU flags (Linux /proc/cpuinfo names) of instructions that run bf16 matrix products natively
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def pick_device(name: str) -> torch.device:
    """'auto' (CUDA when there is one, else the CPU), 'cpu', 'cuda' or 'cuda:N'."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r}: choose auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: this torch sees no CUDA device (CPU-only build, or no GPU); "
                              "use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux reports them; empty where /proc/cpuinfo is not there."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def native_bf16(device: torch.device) -> bool:
    """Whether the device runs bf16 convolutions natively (fast), not emulated."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return any(f in cpu_flags() for f in CPU_BF16_FLAGS)
    return False


def resolve_precision(name: str, device: torch.device) -> str:
    """`auto` -> 'bf16' where the device runs it natively, else 'fp32'; 'fp32'/'bf16' as given."""
    if name not in PRECISIONS:
        raise ConfigError(f"precision {name!r}: choose one of {', '.join(PRECISIONS)}")
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return name


def describe_precision(requested: str, resolved: str, device: torch.device) -> str:
    """The line printed at start: what runs, and why."""
    if requested == "auto":
        why = ("native bf16 on this device" if resolved == "bf16"
               else "no native bf16 here (CUDA bf16, or CPU flags avx512_bf16 / amx_bf16)")
        text = f"precision {resolved} (auto: {why})"
    else:
        text = f"precision {resolved}"
    if resolved == "bf16" and not native_bf16(device):
        text += "; warning: this device emulates bf16, expect it to be much slower than fp32"
    return text


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for forward passes; a no-op context for fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def to_memory_format(module: torch.nn.Module, channels_last: bool) -> torch.nn.Module:
    """Convolution weights in NHWC when `channels_last` (oneDNN and cuDNN run it faster: measured
    1.1-1.4x per training step on a 2-core CPU). A module that cannot convert stays as it is."""
    try:
        return module.to(memory_format=memory_format(channels_last))
    except (RuntimeError, TypeError):
        return module


def contiguous_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with plain (NCHW) strides, so checkpoints do not depend on the training layout."""
    return {k: v.contiguous() if torch.is_tensor(v) else v for k, v in state.items()}


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up over `warmup` steps, then a cosine decay to 0 at `total` (train and fit-teacher)."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return f
