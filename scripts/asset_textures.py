"""The built-in library's procedural textures (used by scripts/make_assets.py): one recipe per kind,
each drawn from the caller's generator, so the library is the same for the same seed."""

from __future__ import annotations

import numpy as np
from PIL import Image

def _noise(rng, size, octaves=5):
    out = np.zeros((size, size))
    for o in range(octaves):
        n = 2 ** (o + 2)
        grid = rng.random((n + 1, n + 1))
        grid[-1], grid[:, -1] = grid[0], grid[:, 0]  # tileable
        img = Image.fromarray((grid * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
        out += np.asarray(img, float) / 255 / 2 ** o
    return (out - out.min()) / (np.ptp(out) + 1e-9)


# Per-pixel grain added to every texture: real surfaces and camera frames carry fine detail that
# smooth procedural noise lacks (docs/rendering.md: the renders' early-layer statistics were far
# from real frames'). Amplitude as a fraction of the colour.
GRAIN = 0.06


def texture(kind: str, rng, size=256) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    n = _noise(rng, size)
    base = rng.uniform(0.2, 0.9, 3)
    if kind == "wood":
        rings = np.sin((x * 8 + n * 3) * np.pi * 2) * 0.5 + 0.5
        col = np.array([0.55, 0.36, 0.2]) * (0.7 + 0.3 * rings[..., None])
    elif kind == "brick":
        row = (y * 8).astype(int)
        mortar = ((y * 8) % 1 < 0.08) | (((x * 4 + 0.5 * (row % 2)) % 1) < 0.04)
        col = np.where(mortar[..., None], [0.75, 0.73, 0.7], np.array([0.6, 0.25, 0.18]) * (0.8 + 0.4 * n[..., None]))
    elif kind == "tiles":
        grout = ((x * 6) % 1 < 0.04) | ((y * 6) % 1 < 0.04)
        col = np.where(grout[..., None], [0.3, 0.3, 0.3], base * (0.9 + 0.1 * n[..., None]))
    elif kind == "fabric":
        weave = (np.sin(x * size * 0.8) * np.sin(y * size * 0.8)) * 0.5 + 0.5
        col = base * (0.75 + 0.15 * weave[..., None] + 0.1 * n[..., None])
    elif kind == "concrete":
        col = np.array([0.55, 0.55, 0.53]) * (0.7 + 0.5 * n[..., None])
    elif kind == "asphalt":
        speck = rng.random((size, size)) > 0.97
        col = np.array([0.18, 0.18, 0.19]) * (0.8 + 0.4 * n[..., None]) + speck[..., None] * 0.15
    elif kind == "grass":
        col = np.array([0.2, 0.45, 0.12]) * (0.6 + 0.7 * n[..., None])
    elif kind == "marble":
        veins = np.abs(np.sin((x + y + n * 2.5) * np.pi * 3)) ** 0.2
        col = np.array([0.92, 0.9, 0.88]) * veins[..., None]
    elif kind == "plaster":  # painted wall: near-white, faint blotches (tinted by the material's colour)
        col = np.array([0.9, 0.9, 0.88]) * (0.92 + 0.08 * n[..., None])
    elif kind == "carpet":  # dense fibres: strong per-pixel variation around one colour
        fibres = rng.random((size, size))
        col = base * (0.7 + 0.15 * n[..., None] + 0.3 * fibres[..., None])
    elif kind == "laminate":  # planks: boards of different shade with wood grain
        board = ((y * 5).astype(int) * 7 + (x * 2 + 0.5 * ((y * 5).astype(int) % 2)).astype(int)) % 5
        grain = np.sin((x * 40 + n * 6) * np.pi) * 0.5 + 0.5
        seam = ((y * 5) % 1 < 0.02)
        col = np.array([0.6, 0.42, 0.25]) * (0.75 + 0.06 * board[..., None] + 0.1 * grain[..., None])
        col = np.where(seam[..., None], col * 0.5, col)
    elif kind == "paper":  # printed matter: posters, book covers, pictures (blocks of colour and text lines)
        blocks = _noise(rng, size, octaves=2)
        palette = rng.uniform(0.1, 0.95, (4, 3))
        col = palette[np.minimum((blocks * 4).astype(int), 3)]
        lines = ((y * 40) % 1 < 0.35) & ((x * 3) % 1 < 0.8) & (blocks > 0.55)
        col = np.where(lines[..., None], col * 0.3, col)
    elif kind == "facade":  # a building face: a grid of dark windows with frames in a wall colour
        win = ((x * 4) % 1 > 0.25) & ((x * 4) % 1 < 0.75) & ((y * 3) % 1 > 0.3) & ((y * 3) % 1 < 0.8)
        glass = np.array([0.12, 0.15, 0.2]) * (0.6 + 0.8 * n[..., None])
        col = np.where(win[..., None], glass, np.array([0.8, 0.78, 0.74]) * (0.85 + 0.15 * n[..., None]))
    else:
        raise ValueError(kind)
    col = col * (1 + GRAIN * rng.standard_normal((size, size, 1)))
    return (np.clip(col, 0, 1) * 255).astype(np.uint8)


# Texture kinds; a texture is named KIND_NN, and simgen.materials picks textures by that kind.
TEXTURES = ["wood", "wood", "brick", "tiles", "tiles", "fabric", "fabric", "concrete", "asphalt", "grass", "marble",
            "plaster", "plaster", "carpet", "carpet", "laminate", "laminate", "paper", "paper", "paper", "facade",
            "facade"]
TILE_M = {"asphalt": 4.0, "facade": 12.0, "paper": 0.6, "carpet": 0.5}  # metres one image covers; default 1


