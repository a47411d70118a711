import math

import pytest
import torch

from distill.layers import (BNStatsHook, FeatureTap, align_prediction, compute_depth_errors, depth_kd_loss,
                            eval_mask, feature_hint_loss, ssi_kd_loss)


def test_bn_statistics_loss_equals_a_hand_computation():
    torch.manual_seed(0)
    conv, bn = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4)
    bn.running_mean.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
    bn.running_var.copy_(torch.tensor([1.0, 0.5, 2.0, 0.1]))
    net = torch.nn.Sequential(conv, bn).eval()
    hook = BNStatsHook(bn)
    x = torch.rand(5, 3, 8, 8)
    net(x)
    feat = conv(x).detach().double()
    mean = feat.mean(dim=(0, 2, 3))
    var = ((feat - mean.view(1, -1, 1, 1)) ** 2).mean(dim=(0, 2, 3))  # biased, as BN normalises
    expected = math.sqrt(((mean - bn.running_mean.double()) ** 2).sum()) + \
        math.sqrt(((var - bn.running_var.double()) ** 2).sum())
    assert hook.loss().item() == pytest.approx(expected, rel=1e-5)
    rm, rv = bn.running_mean.double(), bn.running_var.double()
    expected_norm = math.sqrt(((mean - rm) ** 2).sum()) / math.sqrt(rv.sum()) + \
        math.sqrt(((var - rv) ** 2).sum()) / math.sqrt((rv ** 2).sum())
    assert hook.loss(normalized=True).item() == pytest.approx(expected_norm, rel=1e-5)
    hook.remove()


def test_metrics_against_hand_worked_values():
    gt = torch.tensor([1.0, 2.0, 4.0, 5.0])
    pred = torch.tensor([1.0, 2.5, 2.0, 5.0])
    m = compute_depth_errors(gt, pred)
    assert m["abs_rel"] == pytest.approx((0 + 0.25 + 0.5 + 0) / 4)
    assert m["sq_rel"] == pytest.approx((0 + 0.25 / 2 + 4 / 4 + 0) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((0 + 0.25 + 4 + 0) / 4))
    assert m["rmse_log"] == pytest.approx(math.sqrt((math.log(1.25) ** 2 + math.log(2) ** 2) / 4))
    assert m["log10"] == pytest.approx((math.log10(1.25) + math.log10(2)) / 4)
    # ratios 1, 1.25, 2, 1 against 1.25, 1.5625, 1.953 (strict <)
    assert (m["a1"], m["a2"], m["a3"]) == (0.5, 0.75, 0.75)


def test_protocol_crops_and_caps():
    gt = torch.full((480, 640), 5.0)
    m = eval_mask(gt, "nyu")
    assert m.sum() == (471 - 45) * (601 - 41) and m[45, 41] and not m[44, 41] and not m[45, 601]
    gt[100, 100] = 12.0  # beyond the 10 m NYU cap
    assert not eval_mask(gt, "nyu")[100, 100]
    k = eval_mask(torch.full((375, 1242), 5.0), "kitti")
    assert k[int(0.40810811 * 375), int(0.03594771 * 1242)] and not k[0, 0]
    assert eval_mask(torch.full((10, 10), 5.0), "none").all()


def test_alignment_recovers_scale_and_shift():
    gt = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert torch.allclose(align_prediction(gt * 3, gt, "median"), gt)
    assert torch.allclose(align_prediction((gt - 0.5) / 2, gt, "scale-shift"), gt, atol=1e-5)
    assert torch.equal(align_prediction(gt * 3, gt, "none"), gt * 3)


def test_kd_losses_vanish_only_at_the_teacher():
    t = torch.rand(2, 1, 16, 16) + 1
    assert depth_kd_loss(t, t)["total"].item() == pytest.approx(0, abs=1e-6)
    assert depth_kd_loss(t * 1.1, t)["depth"].item() == pytest.approx(math.log(1.1), rel=1e-4)
    assert ssi_kd_loss(t * 2 + 1, t)["total"].item() == pytest.approx(0, abs=1e-4)  # scale/shift invariant
    assert ssi_kd_loss(t.flip(-1), t)["total"].item() > 0.01


def test_feature_hint_loss_counts_every_level_alike_and_is_zero_only_on_a_match():
    teacher = [torch.randn(2, 4, 8, 8), 100 * torch.randn(2, 8, 4, 4)]
    assert feature_hint_loss([t.clone() for t in teacher], teacher) == 0
    # the same relative error on the small or the large level costs the same
    off_small = float(feature_hint_loss([1.1 * teacher[0], teacher[1]], teacher))
    off_large = float(feature_hint_loss([teacher[0], 1.1 * teacher[1]], teacher))
    assert off_small == pytest.approx(off_large, rel=1e-5) and off_small == pytest.approx(0.01 / 2, rel=1e-5)
    student = [s.clone().requires_grad_() for s in (1.1 * teacher[0], teacher[1])]
    teacher_with_grad = [t.clone().requires_grad_() for t in teacher]
    feature_hint_loss(student, teacher_with_grad).backward()
    assert student[0].grad.abs().sum() > 0 and teacher_with_grad[0].grad is None  # the teacher is only a target
    with pytest.raises(ValueError):
        feature_hint_loss(student[:1], teacher)


def test_feature_tap_keeps_the_last_forward_output():
    conv = torch.nn.Conv2d(3, 2, 1)
    tap = FeatureTap(conv)
    x = torch.rand(1, 3, 4, 4)
    assert tap.out is None
    y = conv(x)
    assert len(tap.out) == 1 and torch.equal(tap.out[0], y)
    tap.remove()
    conv(2 * x)
    assert torch.equal(tap.out[0], y)


def test_feature_tap_lists_the_maps_of_several_modules_in_their_order():
    first, second = torch.nn.Conv2d(3, 2, 1), torch.nn.Conv2d(2, 4, 1)
    tap = FeatureTap(second, first)  # the order given, not the order they run in
    a = first(torch.rand(1, 3, 4, 4))
    assert tap.out is None  # not every tapped module has run yet
    b = second(a)
    assert [t.shape[1] for t in tap.out] == [4, 2] and torch.equal(tap.out[0], b) and torch.equal(tap.out[1], a)
