"""Networks built by name (timm-style registry): encoders, decoder, depth models, the transformation net."""

from distill.networks.inherit import hinted_modules, inherit_weights, require_matching_features
from distill.networks.registry import ARCHITECTURES, build_depth_model, count_macs, count_params

__all__ = ["ARCHITECTURES", "hinted_modules", "build_depth_model", "count_macs", "count_params", "inherit_weights",
           "require_matching_features"]
