"""Pictures of a dataset: colour-mapped depth, instance colours, and a contact sheet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from simgen.shards import Sample, ShardError
from simgen.dataset import DatasetReader

# Viridis (perceptually uniform, readable in grey), as 11 control points interpolated linearly.
_MAP = np.array([[0.267, 0.005, 0.329], [0.283, 0.141, 0.458], [0.254, 0.265, 0.530], [0.207, 0.372, 0.553],
                 [0.164, 0.471, 0.558], [0.128, 0.567, 0.551], [0.135, 0.659, 0.518], [0.267, 0.749, 0.441],
                 [0.478, 0.821, 0.318], [0.741, 0.873, 0.150], [0.993, 0.906, 0.144]])


def colorize_depth(depth: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """HxW metres -> HxWx3 uint8; near is bright, far is dark, invalid (0) is black.
    Inverse depth spreads the colours the way depth models see the scene."""
    valid = np.isfinite(depth) & (depth > 0)
    out = np.zeros((*depth.shape, 3), np.uint8)
    if not valid.any():
        return out
    inv = np.zeros_like(depth, dtype=np.float64)
    inv[valid] = 1.0 / depth[valid]
    lo_inv = 1.0 / hi if hi else np.percentile(inv[valid], 2)
    hi_inv = 1.0 / lo if lo else np.percentile(inv[valid], 98)
    t = np.clip((inv - lo_inv) / max(hi_inv - lo_inv, 1e-9), 0, 1)
    pos = t * (len(_MAP) - 1)
    i0 = np.floor(pos).astype(int).clip(0, len(_MAP) - 2)
    frac = (pos - i0)[..., None]
    rgb = _MAP[i0] * (1 - frac) + _MAP[i0 + 1] * frac
    out[valid] = (rgb[valid] * 255).astype(np.uint8)
    return out


def colorize_instances(inst: np.ndarray) -> np.ndarray:
    """A stable pseudo-random colour per instance id; 0 (none) is black."""
    ids = inst.astype(np.uint32)
    h = (ids * np.uint32(2654435761)) & np.uint32(0xFFFFFF)
    rgb = np.stack([(h >> 16) & 255, (h >> 8) & 255, h & 255], -1).astype(np.uint8)
    rgb = (rgb // 2 + 96).astype(np.uint8)
    rgb[ids == 0] = 0
    return rgb


def sample_row(s: Sample, tile_height: int) -> Image.Image:
    tiles = [s.rgb, colorize_depth(s.depth), colorize_instances(s.inst)]
    h, w = s.rgb.shape[:2]
    tw = max(1, round(w * tile_height / h))
    row = Image.new("RGB", (3 * tw + 8, tile_height), "white")
    for k, t in enumerate(tiles):
        row.paste(Image.fromarray(t).resize((tw, tile_height), Image.NEAREST if k else Image.BILINEAR), (k * (tw + 4), 0))
    valid = s.depth[s.depth > 0]
    label = f"#{s.index} {s.meta.get('scene_family', '')}"
    if valid.size:
        label += f" {valid.min():.1f}-{valid.max():.1f} m"
    ImageDraw.Draw(row).text((4, 2), label, fill=(255, 255, 255))
    return row


def contact_sheet(root: str | Path, out: str | Path, count: int = 12, tile_height: int = 160,
                  columns: int = 2) -> int:
    """Write RGB | depth | instances for `count` samples spread over the dataset; returns how many."""
    ds = DatasetReader(root)
    n = len(ds)
    if n == 0:
        raise ShardError(f"{root}: the dataset has no committed samples yet")
    wanted = set(np.linspace(0, n - 1, min(count, n)).round().astype(int).tolist())
    rows = [sample_row(s, tile_height) for k, s in enumerate(ds.iter_samples()) if k in wanted]
    columns = max(1, min(columns, len(rows)))
    per_col = -(-len(rows) // columns)
    rw, rh = rows[0].size
    sheet = Image.new("RGB", (columns * (rw + 8), per_col * (rh + 6)), "white")
    for k, row in enumerate(rows):
        sheet.paste(row, ((k // per_col) * (rw + 8), (k % per_col) * (rh + 6)))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return len(rows)
