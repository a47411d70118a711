"""ResNet-10/18/34 encoders with torchvision's parameter names (conv1, bn1, layer1..4), so a
torchvision ImageNet state dict loads with strict=False (only `fc.*` is left out)."""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


RESNET_WIDTHS = (64, 128, 256, 512)  # channels of the four stages (the stem has the first stage's)


class ResNetEncoder(nn.Module):
    def __init__(self, blocks: tuple[int, int, int, int], widths: tuple[int, int, int, int] = RESNET_WIDTHS):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, cin = [], widths[0]
        for i, (n, c) in enumerate(zip(blocks, widths)):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(*[BasicBlock(cin if k == 0 else c, c, stride if k == 0 else 1) for k in range(n)]))
            cin = c
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.channels = [widths[0], *widths]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x0 = self.relu(self.bn1(self.conv1(x)))       # stride 2
        x1 = self.layer1(self.maxpool(x0))            # 4
        x2 = self.layer2(x1)                          # 8
        x3 = self.layer3(x2)                          # 16
        x4 = self.layer4(x3)                          # 32
        return [x0, x1, x2, x3, x4]
