"""The shipped stand-in teacher: where it lives, how it was made, and the check that it is intact.

The project may not download a model, and a user's teacher is theirs, so the demo needs a teacher
of its own: a ResNet-18 fitted with ground truth on the project's simulated rooms (made only from
the built-in procedural assets, no third-party data). `scripts/make_teacher.py` makes it from
the recipe below; its card (`teacher.json`) records the command, the seed, the measured metrics
and the sha256 that `verify_standin` checks before the demo uses the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from distill.checkpoint import CheckpointError, build_model, model_info, read_checkpoint, save_checkpoint
from simgen.runs import sha256_file

STANDIN_DIR = Path(__file__).resolve().parents[1] / "assets" / "teacher"
STANDIN_CKPT = STANDIN_DIR / "standin-resnet18.ckpt"
STANDIN_CARD = STANDIN_DIR / "teacher.json"

# The stand-in's domain: indoor rooms of every default type, rendered just above the models' input
# (pixels they never see only cost render time). Fit and test frames differ only in their seed.
RENDER_ARGS = ("--scene", "indoor")
RESOLUTION = "160x120"
FIT_SEED, TEST_SEED = 1000, 2000


def verify_standin(path: Path = STANDIN_CKPT, card: Path = STANDIN_CARD) -> dict[str, Any]:
    """The card of an intact stand-in; CheckpointError naming the damage otherwise."""
    if not path.is_file() or not card.is_file():
        raise CheckpointError(f"{path}: the stand-in teacher is missing (make it with `python scripts/make_teacher.py`)")
    meta = json.loads(card.read_text())
    digest = sha256_file(path)
    if digest != meta.get("sha256"):
        raise CheckpointError(f"{path}: sha256 {digest[:12]}... differs from {meta.get('sha256', '?')[:12]}... in "
                              f"{card.name}: the file is damaged or was replaced (git checkout restores it)")
    return meta


def write_compact(src: str | Path, dst: str | Path) -> str:
    """Copy a checkpoint's model with fp16 weights (half the bytes; the loader casts back to fp32)
    and its fit config; nothing of the optimiser. Returns the new file's sha256."""
    ckpt = read_checkpoint(src)
    info = model_info(ckpt)
    model = build_model(ckpt).half()
    save_checkpoint(dst, model, info.arch, info.input_size, info.min_depth, info.max_depth,
                    fit_config=ckpt.get("fit_config"), weights_dtype=str(torch.float16))
    return sha256_file(Path(dst))
