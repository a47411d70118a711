"""Image statistics that say how a set of images looks, without a reference image: brightness and
contrast per channel, and a noise estimate. Used by `distill gap` and the render benchmark."""

from __future__ import annotations

import numpy as np

# ITU-R BT.601 luma weights: the grey image the noise is estimated on
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float64)
# Immerkaer's mask: the difference of two Laplacians, blind to constant and linear image content
IMMERKAER_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)


def grey_levels(rgb: np.ndarray) -> np.ndarray:
    """H x W x 3 RGB (uint8, or floats in [0, 1]) -> H x W grey image in grey levels (0-255)."""
    rgb = np.asarray(rgb)
    levels = rgb.astype(np.float64) * (1.0 if np.issubdtype(rgb.dtype, np.integer) else 255.0)
    return levels @ GREY_WEIGHTS


def noise_sigma(rgb: np.ndarray) -> float:
    """Standard deviation of additive white noise in grey levels (Immerkaer, "Fast Noise Variance
    Estimation", CVIU 1996): sqrt(pi / 2) / (6 (W - 2)(H - 2)) x sum |grey * mask|. Texture and
    edges count as noise too, so compare images of like content (renders of one scene set)."""
    g = grey_levels(rgb)
    h, w = g.shape
    if h < 3 or w < 3:
        raise ValueError(f"noise_sigma needs an image of at least 3x3 pixels, got {w}x{h}")
    conv = sum(IMMERKAER_MASK[dy, dx] * g[dy:h - 2 + dy, dx:w - 2 + dx] for dy in range(3) for dx in range(3))
    return float(np.sqrt(np.pi / 2) * np.abs(conv).sum() / (6.0 * (w - 2) * (h - 2)))


def channel_stats(rgb: np.ndarray) -> dict[str, list[float]]:
    """Mean and contrast (standard deviation) per RGB channel of an N x H x W x 3 or H x W x 3
    array, in [0, 1]."""
    rgb = np.asarray(rgb)
    flat = rgb.reshape(-1, 3).astype(np.float64) / (255.0 if np.issubdtype(rgb.dtype, np.integer) else 1.0)
    return {"mean": flat.mean(0).round(4).tolist(), "contrast": flat.std(0).round(4).tolist()}
