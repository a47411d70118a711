"""The default profile's denoiser (Open Image Denoise outside Blender, guided by albedo)."""

import numpy as np
import pytest

from simgen.denoise import denoise, linear_to_srgb, srgb_to_linear
from simgen.imagestats import noise_sigma


def test_srgb_round_trip_is_exact():
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, 2)
    assert np.array_equal(linear_to_srgb(srgb_to_linear(levels)), levels)


def test_denoising_removes_render_noise_and_keeps_albedo_edges():
    pytest.importorskip("pyoidn", reason="pyoidn is part of the render extra")
    rng = np.random.default_rng(0)
    albedo = np.zeros((120, 160, 3), np.uint8)
    albedo[:, :80], albedo[:, 80:] = (200, 60, 40), (40, 90, 200)  # two materials, a sharp edge
    clean = (albedo.astype(np.float64) * 0.8).round()
    noisy = np.clip(clean + rng.normal(0, 15, clean.shape), 0, 255).astype(np.uint8)
    out = denoise(noisy, albedo)
    assert noise_sigma(noisy) > 8 and noise_sigma(out) < 2.5  # grey sigma of per-channel 15: ~10
    left, right = out[:, :78].reshape(-1, 3).mean(0), out[:, 82:].reshape(-1, 3).mean(0)
    assert np.abs(left - clean[0, 0]).max() < 6 and np.abs(right - clean[0, -1]).max() < 6
    assert np.abs(out[:, 79].astype(int) - out[:, 80].astype(int)).mean() > 50  # the edge stays sharp
