"""The transformation network T: a small image-to-image conv net that adds a residual, free to change
any pixel. It is the identity at initialisation (its last layer starts at zero) and learns, from the
teacher's BatchNorm statistics, to move simulated images toward what the teacher was trained on.
"""

from __future__ import annotations

import torch
from torch import nn


class TransformNet(nn.Module):
    """x -> x + r(x). The last conv starts at zero, so T(x) == x exactly before training; T then
    learns to move simulated images toward the statistics the teacher's BatchNorm layers stored."""

    def __init__(self, width: int = 32, depth: int = 4):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True)]
        last = nn.Conv2d(width, 3, 3, 1, 1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.body = nn.Sequential(*layers, last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def build_transform() -> nn.Module:
    return TransformNet()
