"""Depth models by name, and their size (parameters, multiply-accumulates)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from distill.networks.decoder import DECODER_WIDTH, DepthNet
from distill.networks.mobilenetv2 import MobileNetV2Encoder
from distill.networks.resnet import ResNetEncoder
from distill.networks.slim import SLIM_DECODER, SLIM_WIDTHS
from simgen.options import ConfigError

ENCODERS: dict[str, Callable[[], nn.Module]] = {
    "mobilenetv2": MobileNetV2Encoder,
    # one block per stage: the stem and first blocks of a ResNet-18/34, which it can start from
    # (distill train --init-student teacher; distill/networks/inherit.py)
    "resnet10": lambda: ResNetEncoder((1, 1, 1, 1)),
    "resnet18": lambda: ResNetEncoder((2, 2, 2, 2)),
    "resnet34": lambda: ResNetEncoder((3, 4, 6, 3)),
    # a ResNet-10 of half the channels, with a decoder of half the channels: it starts from a ResNet-18/34
    # teacher by channel selection (distill/networks/slim.py)
    "resnet10-slim": lambda: ResNetEncoder((1, 1, 1, 1), SLIM_WIDTHS),
}
ARCHITECTURES = tuple(ENCODERS)
DECODER_WIDTHS = {"resnet10-slim": SLIM_DECODER}  # the others: DECODER_WIDTH


def build_depth_model(arch: str, min_depth: float = 0.1, max_depth: float = 10.0,
                      imagenet_weights: str | None = None) -> DepthNet:
    """A depth model by encoder name. `imagenet_weights`: a torchvision state dict file for the
    encoder (e.g. mobilenet_v2-b0353104.pth), loaded when a user has one; nothing is downloaded."""
    if arch not in ENCODERS:
        raise ConfigError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    encoder = ENCODERS[arch]()
    if imagenet_weights:
        try:
            state = torch.load(imagenet_weights, map_location="cpu", weights_only=True)
        except Exception as e:  # a missing file, a file of another format, a pickle with code in it
            raise ConfigError(f"--student-imagenet {imagenet_weights}: not a torch state dict file "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        if not isinstance(state, dict):
            raise ConfigError(f"--student-imagenet {imagenet_weights}: not a state dict (a {type(state).__name__})")
        missing, unexpected = encoder.load_state_dict(state, strict=False)
        unexpected = [k for k in unexpected if not k.startswith(("classifier.", "fc."))]
        if missing or unexpected:
            raise ConfigError(f"{imagenet_weights}: not a torchvision {arch} state dict "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return DepthNet(encoder, min_depth, max_depth, decoder_width=DECODER_WIDTHS.get(arch, DECODER_WIDTH))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: tuple[int, int]) -> int:
    """Multiply-accumulates of one forward pass on a 1 x 3 x H x W input (convolutions and linears)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += output.numel() * k
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, *input_size, device=next(model.parameters()).device))
    model.train(was_training)
    for h in handles:
        h.remove()
    return total
