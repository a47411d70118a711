"""Tiny random-weight Hugging Face depth models, made offline with save_pretrained: one per family that
distill describes (distill/hf_teacher.py). Their weights are drawn wider than transformers' initialiser
so that their output varies over the image (at its own init a tiny model's depth is nearly constant)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
WEIGHT_STD = 0.3  # of every weight: a tiny model's output then varies by tens of percent over an image


def _dinov2(**kw):
    from transformers import Dinov2Config

    base = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, patch_size=14,
                image_size=56, out_features=["stage1", "stage2", "stage3", "stage4"], reshape_hidden_states=False)
    return Dinov2Config(**{**base, **kw})


def _configs() -> dict:
    """name -> (config, preprocessor_config.json's content)."""
    import transformers as tf

    dpt_head = dict(neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16)
    da = dict(backbone_config=_dinov2(), reassemble_hidden_size=32, head_hidden_size=8, patch_size=14, **dpt_head)
    small_vit = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=8,
                     image_size=32)
    dino_pre = {"size": {"height": 56, "width": 56}, "keep_aspect_ratio": True, "ensure_multiple_of": 14, **IMAGENET}
    return {
        "depth-anything": (tf.DepthAnythingConfig(**da), dino_pre),
        "depth-anything-metric": (tf.DepthAnythingConfig(**da, depth_estimation_type="metric", max_depth=20),
                                  dino_pre),
        "dpt-dinov2": (tf.DPTConfig(backbone_config=_dinov2(), hidden_size=32, **dpt_head), dino_pre),
        "glpn": (tf.GLPNConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 32, 64], num_attention_heads=[1, 1, 2, 2],
                               decoder_hidden_size=16, max_depth=10), {"size_divisor": 32}),
        "zoedepth": (tf.ZoeDepthConfig(
            backbone_config=tf.BeitConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                                          intermediate_size=64, image_size=64, patch_size=16,
                                          out_features=["stage1", "stage2", "stage3", "stage4"],
                                          use_relative_position_bias=True, reshape_hidden_states=False),
            bottleneck_features=16, num_relative_features=8, bin_embedding_dim=8, num_attractors=[4, 2, 2, 1],
            bin_configurations=[{"n_bins": 8, "min_depth": 0.001, "max_depth": 10.0}], hidden_size=32, **dpt_head),
            {"size": {"height": 48, "width": 64}, "keep_aspect_ratio": True, "ensure_multiple_of": 32,
             "do_pad": True}),
        "depth-pro": (tf.DepthProConfig(patch_size=32, fusion_hidden_size=16, intermediate_hook_ids=[1, 0],
                                        intermediate_feature_dims=[8, 8], scaled_images_feature_dims=[16, 16, 8],
                                        use_fov_model=True, image_model_config=tf.Dinov2Config(**small_vit),
                                        patch_model_config=tf.Dinov2Config(**small_vit),
                                        fov_model_config=tf.Dinov2Config(**small_vit)),
                      {"size": {"height": 128, "width": 128}}),
    }


FAMILIES = ("depth-anything", "depth-anything-metric", "dpt-dinov2", "glpn", "zoedepth", "depth-pro")


def save_tiny_model(name: str, folder: Path, seed: int = 0) -> Path:
    """Write the tiny model `name` (one of FAMILIES) as save_pretrained does, with its preprocessor config."""
    from transformers import AutoModelForDepthEstimation

    config, pre = _configs()[name]
    torch.manual_seed(seed)
    model = AutoModelForDepthEstimation.from_config(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, WEIGHT_STD)
    model.save_pretrained(folder)
    (Path(folder) / "preprocessor_config.json").write_text(json.dumps(pre))
    return Path(folder)
