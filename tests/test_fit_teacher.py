"""distill fit-teacher: the frame order and augmentation are functions of the seed, fresh every
epoch, and an interrupted fit continues exactly where it stopped."""

from __future__ import annotations

import pytest
import torch

from conftest import SIZE
from distill import fit_teacher as fit
from distill.checkpoint import read_checkpoint
from distill.data import RGBDFolder
from simgen.options import ConfigError


def test_epoch_order_is_a_fresh_permutation_per_epoch_and_starts_anywhere():
    n = 7
    stream = iter(fit._EpochOrder(n, seed=3))
    positions = [next(stream) for _ in range(3 * n)]
    epochs = [positions[e * n:(e + 1) * n] for e in range(3)]
    for e, chunk in enumerate(epochs):
        assert sorted(k % n for k in chunk) == list(range(n)) and all(k // n == e for k in chunk)
    assert [k % n for k in epochs[0]] != [k % n for k in epochs[1]]
    late = iter(fit._EpochOrder(n, seed=3, start=10))
    assert [next(late) for _ in range(11)] == positions[10:]


def test_a_frame_is_augmented_anew_in_every_epoch(synthetic_shards):
    data = fit._Augmented(RGBDFolder(synthetic_shards, 1000.0, None), SIZE.hw, seed=0)
    n = len(data)
    differ = [not torch.equal(data[i]["rgb"], data[i + n]["rgb"]) for i in range(n)]
    assert sum(differ) >= n - 1  # two epochs draw the same jitter for a frame only by chance
    assert torch.equal(data[2]["rgb"], data[2]["rgb"])  # and the same position always the same


def _config(data, out, **kw) -> fit.FitConfig:
    base = dict(arch="resnet18", input_size=SIZE, split=None, steps=8, batch_size=4, lr=3e-3, workers=0, device="cpu",
                precision="fp32")
    return fit.FitConfig(data=str(data), out=str(out), **{**base, **kw})


def test_an_interrupted_fit_resumes_exactly(synthetic_shards, tmp_path, monkeypatch):
    monkeypatch.setattr(fit, "PARTIAL_EVERY", 3)
    fit.fit_teacher(_config(synthetic_shards, tmp_path / "whole.ckpt"), show_progress=False)

    calls = {"n": 0}
    loss = fit.supervised_loss

    def interrupted(pred, gt):
        calls["n"] += 1
        if calls["n"] == 8:  # the 8th step: steps 3 and 6 were saved
            raise KeyboardInterrupt
        return loss(pred, gt)

    out = tmp_path / "split.ckpt"
    monkeypatch.setattr(fit, "supervised_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit.fit_teacher(_config(synthetic_shards, out), show_progress=False)
    monkeypatch.setattr(fit, "supervised_loss", loss)
    partial = fit.partial_path(out)
    assert not out.exists() and read_checkpoint(partial)["step"] == 6

    with pytest.raises(FileExistsError, match="--resume"):  # never started over silently
        fit.fit_teacher(_config(synthetic_shards, out), show_progress=False)
    with pytest.raises(ConfigError, match="lr"):
        fit.fit_teacher(_config(synthetic_shards, out, resume=True, lr=1e-3), show_progress=False)
    assert read_checkpoint(partial)["step"] == 6

    state = torch.load(partial, weights_only=False)  # as if the first sitting had fitted for an hour
    torch.save({**state, "fit_seconds": 3600.0}, partial)
    fit.fit_teacher(_config(synthetic_shards, out, resume=True), show_progress=False)
    assert not partial.exists()
    assert 3600.0 < read_checkpoint(out)["fit_seconds"] < 3600.0 + 600  # the card's fit time spans both sittings
    whole, split = read_checkpoint(tmp_path / "whole.ckpt")["model"], read_checkpoint(out)["model"]
    for name in whole:
        assert torch.allclose(whole[name].float(), split[name].float(), atol=1e-5), name


def test_resume_without_an_unfinished_fit_is_an_error(synthetic_shards, tmp_path):
    with pytest.raises(FileNotFoundError, match="no unfinished fit"):
        fit.fit_teacher(_config(synthetic_shards, tmp_path / "t.ckpt", resume=True), show_progress=False)
