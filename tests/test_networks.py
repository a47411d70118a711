import re

import pytest
import torch

from distill.networks import (build_depth_model, count_macs, count_params, hinted_modules, inherit_weights,
                              require_matching_features)
from distill.networks.decoder import DepthDecoder
from distill.networks.mobilenetv2 import MobileNetV2Encoder
from distill.networks.resnet import ResNetEncoder
from distill.networks.transform import TransformNet
from simgen.options import ConfigError


def test_transformation_network_is_the_identity_at_init():
    x = torch.rand(2, 3, 32, 48)
    assert torch.equal(TransformNet()(x), x)


def test_encoders_use_torchvision_parameter_names(tmp_path):
    mnv2 = MobileNetV2Encoder().state_dict()
    for key in ("features.0.0.weight", "features.0.1.running_mean", "features.1.conv.0.0.weight",
                "features.2.conv.0.0.weight", "features.2.conv.2.weight", "features.17.conv.3.running_var",
                "features.18.0.weight"):
        assert key in mnv2, key
    assert sum(v.numel() for k, v in mnv2.items() if "running" not in k and "num_batches" not in k) == 2223872
    r18 = ResNetEncoder((2, 2, 2, 2)).state_dict()
    for key in ("conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
                "layer4.1.bn2.running_var"):
        assert key in r18, key
    # an ImageNet state dict (here: our own plus a classifier) loads through the documented path
    state = dict(mnv2, **{"classifier.1.weight": torch.zeros(1000, 1280), "classifier.1.bias": torch.zeros(1000)})
    state["features.0.0.weight"] = torch.full_like(state["features.0.0.weight"], 0.5)
    torch.save(state, tmp_path / "mnv2.pth")
    model = build_depth_model("mobilenetv2", imagenet_weights=str(tmp_path / "mnv2.pth"))
    assert (model.encoder.features[0][0].weight == 0.5).all()
    torch.save({"nonsense.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a torchvision mobilenetv2 state dict"):
        build_depth_model("mobilenetv2", imagenet_weights=str(tmp_path / "bad.pth"))


@pytest.mark.parametrize("arch", ["mobilenetv2", "resnet18"])
def test_depth_models_predict_full_resolution_depth_within_range(arch):
    model = build_depth_model(arch, min_depth=0.5, max_depth=8.0).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 96))
    assert out.shape == (2, 1, 64, 96)
    assert out.min() >= 0.5 - 1e-4 and out.max() <= 8.0 + 1e-3
    with torch.no_grad():
        assert model(torch.rand(1, 3, 50, 90)).shape == (1, 1, 50, 90)  # padded inside, cropped back
    with pytest.raises(AssertionError, match="at least 32x32"):
        model(torch.rand(1, 3, 16, 96))


def test_size_counters():
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1))
    assert count_params(conv) == 3 * 8 * 9 + 8
    assert count_macs(conv, (10, 12)) == 8 * 10 * 12 * 3 * 9
    student, teacher = build_depth_model("mobilenetv2"), build_depth_model("resnet34")
    assert count_params(student) < count_params(teacher) / 4


def test_a_resnet10_inherits_the_first_block_of_each_stage_of_a_resnet34():
    teacher, student = build_depth_model("resnet34"), build_depth_model("resnet10")
    assert inherit_weights(student, teacher) == len(student.state_dict())
    for key in ("encoder.conv1.weight", "encoder.layer3.0.downsample.1.running_var", "encoder.layer4.0.conv2.weight",
                "decoder.head.bias"):
        assert torch.equal(student.state_dict()[key], teacher.state_dict()[key]), key
    assert count_params(student) < count_params(build_depth_model("resnet18")) / 2


def test_inherit_weights_needs_a_depth_model_of_this_project():
    with pytest.raises(ConfigError, match="depth model of this project"):
        inherit_weights(build_depth_model("resnet10"), torch.nn.Conv2d(3, 1, 3))


def test_feature_hints_need_encoders_with_the_teachers_channels():
    require_matching_features(build_depth_model("resnet10"), build_depth_model("resnet34"))  # same channels: fine
    with pytest.raises(ConfigError, match=re.escape("channels, the teacher's [64, 64, 128, 256, 512]")):
        require_matching_features(build_depth_model("mobilenetv2"), build_depth_model("resnet18"))
    with pytest.raises(ConfigError, match="depth model of this project"):
        require_matching_features(build_depth_model("resnet10"), torch.nn.Conv2d(3, 1, 3))
    student = build_depth_model("resnet10")
    assert hinted_modules(student) == (student.encoder,)
    student.decoder = DepthDecoder(student.encoder.channels, width=(128, 64, 32, 16, 8))
    require_matching_features(student, build_depth_model("resnet18"))  # encoder hints: the decoder does not matter


def _zero_unselected(teacher: torch.nn.Module, groups: dict) -> None:
    """Zero the scale and shift of every BatchNorm channel that selection leaves out: the teacher then
    computes with the kept channels only."""
    def group(name: str) -> str | None:
        if name == "encoder.bn1":
            return "stream0"
        m = re.fullmatch(r"encoder\.layer(\d)\.0\.(bn1|bn2|downsample\.1)", name)
        if m:
            return f"{'mid' if m.group(2) == 'bn1' else 'stream'}{int(m.group(1)) - 1}"
        m = re.fullmatch(r"decoder\.blocks\.(\d)\.conv\.2", name)
        return f"dec{m.group(1)}" if m else None

    for name, module in teacher.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            dropped = torch.ones(module.num_features, dtype=torch.bool)
            dropped[groups[group(name)]] = False
            with torch.no_grad():
                module.weight[dropped] = 0
                module.bias[dropped] = 0


def test_a_slim_student_is_the_teacher_on_the_channels_it_selects():
    """Mechanism: a full-width ResNet-10 whose left-out channels are scaled to zero computes with the kept ones
    only; the slim student started from it by selection must then predict exactly its depth, and its encoder
    maps must be the teacher's on the hinted channels."""
    from distill.networks.slim import select_channels

    torch.manual_seed(0)
    teacher = build_depth_model("resnet10").eval()
    with torch.no_grad():
        for m in teacher.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1)
    groups = select_channels(teacher.state_dict())
    _zero_unselected(teacher, groups)
    student = build_depth_model("resnet10-slim").eval()
    assert inherit_weights(student, teacher) == len(student.state_dict())
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(student(x), teacher(x), rtol=1e-4, atol=1e-5)
        for mine, theirs, kept in zip(student.encoder(x), teacher.encoder(x), student.hint_channels, strict=True):
            assert torch.allclose(mine, theirs[:, kept], atol=1e-5)
    require_matching_features(student, teacher)  # the hints compare the selected channels


def test_slim_selection_keeps_the_channels_with_the_largest_batchnorm_scales():
    from distill.networks.slim import select_channels

    teacher = build_depth_model("resnet18")
    with torch.no_grad():
        teacher.encoder.layer3[0].bn1.weight.copy_(torch.arange(256, dtype=torch.float32))
    assert torch.equal(select_channels(teacher.state_dict())["mid2"], torch.arange(128, 256))
    student = build_depth_model("resnet10-slim")
    inherit_weights(student, teacher)
    assert torch.equal(student.encoder.layer3[0].bn1.weight, torch.arange(128, 256, dtype=torch.float32))
    assert count_macs(student, (240, 320)) < count_macs(teacher, (240, 320)) / 6
