"""Object-wise image mixing (Hu et al. 2022): paste movable objects, by their instance masks,
from other simulated images of the batch into each image, making new arrangements.

Works on a batch on any device: rgb B x 3 x H x W, depth B x 1 x H x W (metres, 0 = invalid),
inst B x 1 x H x W (thing ids only; 0 elsewhere). Only pixels under a pasted mask change.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from simgen.options import check_fields, option


@dataclass
class MixConfig:
    prob: float = option(0.8, "chance that an image receives pasted objects", expert=True, low=0, high=1)
    max_objects: int = option(3, "pasted objects per receiving image: 1 to this", expert=True, low=1)
    scale_jitter: float = option(0.2, "a pasted object is scaled by 1 +- this", expert=True, low=0, high=0.9)
    shift: float = option(0.25, "largest move, as a share of the image size", expert=True, low=0, high=1)
    min_pixels: int = option(16, "objects smaller than this are not pasted", expert=True, low=0)

    def __post_init__(self) -> None:
        check_fields(self, prefix="mix-")


def _warp(t: torch.Tensor, scale: float, dx: float, dy: float, mode: str) -> torch.Tensor:
    """Scale about the image centre and shift (fractions of the size); 1 x C x H x W."""
    theta = torch.tensor([[1 / scale, 0, -2 * dx / scale], [0, 1 / scale, -2 * dy / scale]],
                         dtype=torch.float32, device=t.device)[None]
    grid = F.affine_grid(theta, list(t.shape), align_corners=False)
    return F.grid_sample(t.float(), grid, mode=mode, padding_mode="zeros", align_corners=False)


def mix_objects(rgb: torch.Tensor, depth: torch.Tensor, inst: torch.Tensor, cfg: MixConfig,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns mixed (rgb, depth, inst) and the pasted-pixel mask (B x 1 x H x W, bool).

    Each pasted object gets a new id above the batch's largest, so instance masks stay distinct."""
    b = rgb.shape[0]
    src_rgb_all, src_depth_all, src_inst_all = rgb, depth, inst  # objects come from the unmixed batch
    rgb, depth, inst = rgb.clone(), depth.clone(), inst.clone()
    pasted = torch.zeros_like(depth, dtype=torch.bool)
    if b < 2:
        return rgb, depth, inst, pasted
    rand = lambda *s: torch.rand(*s, generator=generator).tolist()  # noqa: E731  (CPU generator, any device)
    next_id = int(inst.max().item()) + 1
    src_ids = [torch.unique(src_inst_all[j]) for j in range(b)]
    src_ids = [ids[ids > 0] for ids in src_ids]
    for i in range(b):
        if rand(1)[0] >= cfg.prob:
            continue
        n = 1 + int(rand(1)[0] * cfg.max_objects)
        for _ in range(n):
            j = int(rand(1)[0] * (b - 1))
            j = j + 1 if j >= i else j  # another image
            if len(src_ids[j]) == 0:
                continue
            obj = int(src_ids[j][int(rand(1)[0] * len(src_ids[j]))])
            mask = (src_inst_all[j:j + 1] == obj).float()
            if mask.sum() < cfg.min_pixels:
                continue
            u = rand(3)
            scale = 1 + (2 * u[0] - 1) * cfg.scale_jitter
            dx, dy = (2 * u[1] - 1) * cfg.shift, (2 * u[2] - 1) * cfg.shift
            m = _warp(mask, scale, dx, dy, "nearest") > 0.5
            src_depth = _warp(src_depth_all[j:j + 1], scale, dx, dy, "nearest")
            m &= src_depth > 0
            if not m.any():
                continue
            src_rgb = _warp(src_rgb_all[j:j + 1], scale, dx, dy, "bilinear")
            m3 = m.expand_as(src_rgb)
            rgb[i:i + 1][m3] = src_rgb[m3].to(rgb.dtype)
            depth[i:i + 1][m] = src_depth[m]
            inst[i:i + 1][m] = next_id
            pasted[i:i + 1] |= m
            next_id += 1
    return rgb, depth, inst, pasted
