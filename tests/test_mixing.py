import torch

from distill.mixing import MixConfig, mix_objects


def batch(b=4, h=32, w=40):
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(b, 3, h, w, generator=g)
    depth = torch.full((b, 1, h, w), 5.0)
    inst = torch.zeros(b, 1, h, w, dtype=torch.int64)
    for i in range(b):
        inst[i, :, 8:20, 10 + 3 * i:24 + 3 * i] = i + 1
        depth[i][inst[i] > 0] = 2.0 + 0.5 * i
    return rgb, depth, inst


def test_mixing_changes_only_pixels_under_pasted_masks():
    rgb, depth, inst = batch()
    m_rgb, m_depth, m_inst, pasted = mix_objects(rgb, depth, inst, MixConfig(prob=1.0, max_objects=3),
                                                 torch.Generator().manual_seed(1))
    assert pasted.any()
    outside = ~pasted
    assert torch.equal(m_rgb[outside.expand_as(rgb)], rgb[outside.expand_as(rgb)])
    assert torch.equal(m_depth[outside], depth[outside]) and torch.equal(m_inst[outside], inst[outside])
    # pasted pixels carry new instance ids and depths of the source objects
    assert (m_inst[pasted] > inst.max()).all()
    assert set(m_depth[pasted].unique().tolist()) <= {2.0, 2.5, 3.0, 3.5}
    # inputs are untouched
    assert torch.equal(batch()[0], rgb)


def test_no_mixing_when_probability_is_zero():
    rgb, depth, inst = batch()
    _, _, _, pasted = mix_objects(rgb, depth, inst, MixConfig(prob=0.0))
    assert not pasted.any()
