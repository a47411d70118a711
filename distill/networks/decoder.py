"""A light U-Net-style depth decoder and the full depth model (encoder + decoder + output range)."""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn


class UpBlock(nn.Module):
    """Upsample x2, concatenate the skip, then one depthwise-separable 3x3 conv."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(cin + cskip, cin + cskip, 3, 1, 1, groups=cin + cskip, bias=False),
            nn.Conv2d(cin + cskip, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        size = skip.shape[-2:] if skip is not None else (x.shape[-2] * 2, x.shape[-1] * 2)
        x = F.interpolate(x, size=size, mode="nearest")
        return self.conv(x if skip is None else torch.cat([x, skip], 1))


DECODER_WIDTH = (256, 128, 64, 32, 16)  # output channels of the up-blocks, stride 16 to full resolution


class DepthDecoder(nn.Module):
    def __init__(self, enc_channels: list[int], width: tuple[int, ...] = DECODER_WIDTH):
        super().__init__()
        skips = enc_channels[:-1][::-1] + [0]  # stride 16, 8, 4, 2 skips, then full resolution
        cin = enc_channels[-1]
        self.blocks = nn.ModuleList()
        for cskip, cout in zip(skips, width):
            self.blocks.append(UpBlock(cin, cskip, cout))
            cin = cout
        self.head = nn.Conv2d(cin, 1, 3, 1, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        skips = feats[:-1][::-1] + [None]
        for block, skip in zip(self.blocks, skips):
            x = block(x, skip)
        return self.head(x)


class DepthNet(nn.Module):
    """Image in [0, 1] (B x 3 x H x W; normalised inside) -> metric depth B x 1 x H x W within
    [min_depth, max_depth], through a sigmoid on inverse depth (monodepth2's disp_to_depth)."""

    def __init__(self, encoder: nn.Module, min_depth: float = 0.1, max_depth: float = 10.0,
                 mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), decoder_width: tuple[int, ...] = DECODER_WIDTH):
        super().__init__()
        self.encoder = encoder
        self.decoder = DepthDecoder(encoder.channels, decoder_width)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        assert h >= 32 and w >= 32, f"input must be at least 32x32, got {h}x{w}"
        # the encoder halves the size five times: pad to multiples of 32 (edge pixels), crop after
        ph, pw = -h % 32, -w % 32
        x = (image - self.mean) / self.std
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        logits = self.decoder(self.encoder(x))[..., :h, :w]
        lo, hi = 1.0 / self.max_depth, 1.0 / self.min_depth
        return 1.0 / (lo + (hi - lo) * torch.sigmoid(logits.float()))
