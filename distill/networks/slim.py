"""A slim student started from its teacher by channel selection (`--student resnet10-slim --init-student
teacher`).

The slim ResNet-10 has half the channels of a ResNet-10 in every layer, and its decoder half of the
decoder's. Each of its channels is a channel of the teacher: in every group of channels that one
BatchNorm normalises (a residual stream: every BatchNorm that adds into it), the slim student keeps
the channels whose BatchNorm scales |gamma| sum highest (network slimming, Liu et al. 2017: a channel
scaled near zero contributes little). Its convolutions are the teacher's, sliced to the kept output
and input channels; its blocks are the first of each of the teacher's stages (as for `resnet10`). The
feature hints compare the student's maps with the teacher's kept channels (`hint_channels`).
"""

from __future__ import annotations

import torch
from torch import nn

SLIM_WIDTHS = (32, 64, 128, 256)        # the slim encoder's stage channels (a ResNet's halved)
SLIM_DECODER = (128, 64, 32, 16, 8)     # the slim decoder's up-block channels (the decoder's halved)
STAGES = ("layer1", "layer2", "layer3", "layer4")


def _stream_scores(teacher: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """|gamma| summed over the BatchNorms that write into each residual stream: the stem's (with layer1's,
    which adds into it) and each later stage's."""
    scores = []
    for i, stage in enumerate(STAGES):
        writers = [k for k in teacher if k.startswith(f"encoder.{stage}.")
                   and k.endswith(("bn2.weight", "downsample.1.weight"))]
        total = sum(teacher[k].abs() for k in writers)
        scores.append(total + teacher["encoder.bn1.weight"].abs() if i == 0 else total)
    return scores


def _top(score: torch.Tensor, k: int) -> torch.Tensor:
    return torch.sort(torch.topk(score, k).indices).values


def select_channels(teacher: dict[str, torch.Tensor], widths: tuple[int, ...] = SLIM_WIDTHS,
                    decoder: tuple[int, ...] = SLIM_DECODER) -> dict[str, torch.Tensor]:
    """The teacher's channels each group keeps (sorted indices), by group name: stream0-3 (the stem's and
    the stages' residual streams), mid1-4 (inside each stage's first block), dec0-4 (the decoder's blocks)."""
    groups = {f"stream{i}": _top(s, w) for i, (s, w) in enumerate(zip(_stream_scores(teacher), widths))}
    for i, (stage, w) in enumerate(zip(STAGES, widths)):
        groups[f"mid{i}"] = _top(teacher[f"encoder.{stage}.0.bn1.weight"].abs(), w)
    for j, w in enumerate(decoder):
        groups[f"dec{j}"] = _top(teacher[f"decoder.blocks.{j}.conv.2.weight"].abs(), w)
    return groups


def _decoder_inputs(groups: dict[str, torch.Tensor], teacher_widths: list[int]) -> list[torch.Tensor]:
    """Each decoder block's input channels (its upsampled input, then its skip) as indices of the teacher's."""
    skips = ["stream2", "stream1", "stream0", "stream0", None]  # x3, x2, x1 (= the stem's stream), x0, none
    inputs, previous, offset_width = [], "stream3", teacher_widths
    for j, skip in enumerate(skips):
        upsampled = groups[previous]
        width = offset_width[j]  # the teacher's channels of the upsampled input come first in the concatenation
        inputs.append(torch.cat([upsampled, groups[skip] + width]) if skip else upsampled)
        previous = f"dec{j}"
    return inputs


def slice_teacher(teacher: dict[str, torch.Tensor], groups: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The slim student's state dict: each tensor the teacher's of the same name, sliced to the kept
    channels of its output (dim 0) and input (dim 1)."""
    stage_in = ["stream0", "stream0", "stream1", "stream2"]
    rules: dict[str, tuple[str | None, str | None]] = {"encoder.conv1": ("stream0", None),
                                                       "encoder.bn1": ("stream0", None)}
    for i, stage in enumerate(STAGES):
        block = f"encoder.{stage}.0"
        rules.update({f"{block}.conv1": (f"mid{i}", stage_in[i]), f"{block}.bn1": (f"mid{i}", None),
                      f"{block}.conv2": (f"stream{i}", f"mid{i}"), f"{block}.bn2": (f"stream{i}", None),
                      f"{block}.downsample.0": (f"stream{i}", stage_in[i]), f"{block}.downsample.1": (f"stream{i}", None)})
    # input widths of the teacher's decoder blocks: stage 4's, then each block's output
    dec_widths = [int(teacher["encoder.layer4.0.bn2.weight"].numel())] + [
        int(teacher[f"decoder.blocks.{j}.conv.2.weight"].numel()) for j in range(4)]
    index = {**groups, **{f"cat{j}": ix for j, ix in enumerate(_decoder_inputs(groups, dec_widths))}}
    for j in range(5):
        rules.update({f"decoder.blocks.{j}.conv.0": (f"cat{j}", None), f"decoder.blocks.{j}.conv.1": (f"dec{j}", f"cat{j}"),
                      f"decoder.blocks.{j}.conv.2": (f"dec{j}", None)})
    rules["decoder.head"] = (None, "dec4")
    state = {}
    for name, tensor in teacher.items():
        module, _, leaf = name.rpartition(".")
        if module not in rules:
            continue
        out, inp = rules[module]
        t = tensor if out is None or tensor.dim() == 0 else tensor.index_select(0, index[out])
        state[name] = t.index_select(1, index[inp]) if inp and t.dim() > 1 else t
    return state


def hint_channels(groups: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """The teacher's channels of each encoder map the feature hints compare (x0 .. x4)."""
    return [groups["stream0"], groups["stream0"], groups["stream1"], groups["stream2"], groups["stream3"]]


def is_slim(student: nn.Module, teacher: nn.Module) -> bool:
    """Whether the student's encoder is a narrower ResNet than the teacher's (so it starts by selection)."""
    mine, theirs = (getattr(getattr(m, "encoder", None), "channels", None) for m in (student, teacher))
    return bool(mine and theirs and len(mine) == len(theirs) and mine != theirs and
                all(a <= b for a, b in zip(mine, theirs)) and hasattr(student.encoder, "layer1"))
