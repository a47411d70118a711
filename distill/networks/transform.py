"""The transformation network T, in two designs (`distill train --transform-net`):

- `residual`: a small image-to-image conv net that adds a residual, free to change any pixel;
- `photometric`: a tiny net that reads the image and predicts a handful of per-image camera-like
  parameters (colour gain and offset, contrast, saturation, gamma, blur or sharpening, noise),
  which are then applied to the whole image: it can change how a render looks, not what it shows.

Both are the identity at initialisation (their last layer starts at zero) and learn, from the
teacher's BatchNorm statistics, to move simulated images toward what the teacher was trained on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

TRANSFORM_NETS = ("residual", "photometric")

# Ranges of the photometric parameters (each is p -> range * tanh(p), so 0 is the identity):
GAIN_RANGE = 0.5        # per-channel gain exp(+-0.5): about 0.6x to 1.65x
OFFSET_RANGE = 0.2      # per-channel offset, in [0, 1] image units
CONTRAST_RANGE = 0.7    # contrast about its mean, exp(+-0.7)
SATURATION_RANGE = 1.0  # exp(+-1): greyer to more saturated
GAMMA_RANGE = 0.5       # gamma exp(+-0.5)
BLUR_RANGE = 1.0        # blend toward a 5x5 Gaussian blur (positive) or away from it, i.e. sharpen (negative)
NOISE_RANGE = 0.1       # std of additive Gaussian noise
GAMMA_FLOOR = 1e-4
N_PARAMS = 3 + 3 + 1 + 1 + 1 + 1 + 1
# the parameter net reads the image at this size: global looks need no detail, and it keeps T cheap
PARAM_NET_INPUT = 64


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


def _gaussian_blur(x: torch.Tensor) -> torch.Tensor:
    """5x5 Gaussian blur (sigma 1), per channel, edges replicated."""
    k1 = torch.exp(-torch.arange(-2, 3, dtype=x.dtype, device=x.device) ** 2 / 2)
    k1 = k1 / k1.sum()
    k = (k1[:, None] * k1[None, :]).expand(x.shape[1], 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), k, groups=x.shape[1])


class PhotometricTransform(nn.Module):
    """x -> a per-image photometric change of x, its parameters predicted from x by a tiny net.
    The noise is drawn afresh on every call (its std is learned)."""

    def __init__(self, width: int = 32):
        super().__init__()
        head = nn.Linear(width, N_PARAMS)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        self.params = nn.Sequential(
            nn.Conv2d(3, width // 2, 3, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width // 2, width, 3, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, width, 3, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)

    def predict_params(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each parameter per image, shaped to broadcast over B x C x H x W."""
        small = F.interpolate(x, size=(PARAM_NET_INPUT, PARAM_NET_INPUT), mode="bilinear", align_corners=False)
        p = torch.tanh(self.params(small).float())[:, :, None, None]
        return {"gain": torch.exp(GAIN_RANGE * p[:, 0:3]), "offset": OFFSET_RANGE * p[:, 3:6],
                "contrast": torch.exp(CONTRAST_RANGE * p[:, 6:7]), "saturation": torch.exp(SATURATION_RANGE * p[:, 7:8]),
                "gamma": torch.exp(GAMMA_RANGE * p[:, 8:9]), "blur": BLUR_RANGE * p[:, 9:10],
                "noise": NOISE_RANGE * p[:, 10:11]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.predict_params(x)
        x32 = x.float()
        # gamma: x ** g has no finite gradient in g at 0, so black pixels stay black
        y = torch.where(x32 > GAMMA_FLOOR, x32.clamp_min(GAMMA_FLOOR) ** q["gamma"], x32)
        grey = y.mean(1, keepdim=True)
        y = grey + q["saturation"] * (y - grey)
        mean = y.mean((1, 2, 3), keepdim=True)
        y = mean + q["contrast"] * (y - mean)
        y = y * q["gain"] + q["offset"]
        y = y + q["blur"] * (_gaussian_blur(y) - y)
        y = y + q["noise"] * torch.randn_like(y)
        return y.to(x.dtype)


def build_transform(kind: str) -> nn.Module:
    if kind == "residual":
        return TransformNet()
    if kind == "photometric":
        return PhotometricTransform()
    raise ValueError(f"transform net {kind!r}: choose one of {', '.join(TRANSFORM_NETS)}")
