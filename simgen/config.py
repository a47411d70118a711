"""Render configuration: one plain dataclass, resolved once, stored in the manifest.

Everything that changes what a sample looks like is in `RenderConfig`; how the work is run
(workers, executor, how many samples) is not, so a dataset can be extended or resumed with other
run options but never silently mixed with another config.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

# Camera presets: (width, height, fx, fy, cx, cy) at the preset's native resolution.
CAMERA_PRESETS: dict[str, tuple[int, int, float, float, float, float]] = {
    "nyu": (640, 480, 518.9, 518.9, 320.0, 240.0),
    "kitti": (1242, 375, 721.5, 721.5, 621.0, 187.5),
}
SCENE_FAMILIES = ("indoor", "outdoor", "mixed")

# Render profiles. "fast" is the default: 3 samples, few bounces, no denoiser (OIDN doubled the
# time per frame on 2 cores; samples cost ~0.15-0.22 s each per 320x240 frame there; see
# docs/rendering.md). "blenderproc" is BlenderProc's own
# defaults (1024 samples with adaptive threshold 0.01, OIDN denoiser, 3 bounces): the reference
# of scripts/bench_render.py and the choice for best-looking images.
RENDER_PROFILES: dict[str, dict[str, Any]] = {
    # clamp_indirect: Cycles' indirect sample clamp; at a few samples per pixel it removes the
    # white speckles (fireflies) of rare bright paths at no cost. 0 = Blender's default (10).
    # light_tree: Cycles' light tree (BlenderProc turns it off); measured 5% faster per frame here.
    "fast": {"samples": 3, "noise_threshold": 0.0, "denoiser": None, "max_bounces": 2,
             "diffuse_bounces": 1, "glossy_bounces": 1, "clamp_indirect": 1.0, "light_tree": True},
    "quality": {"samples": 32, "noise_threshold": 0.05, "denoiser": "INTEL", "max_bounces": 3,
                "diffuse_bounces": 2, "glossy_bounces": 1, "clamp_indirect": 3.0, "light_tree": True},
    "blenderproc": {"samples": 1024, "noise_threshold": 0.01, "denoiser": "INTEL", "max_bounces": 3,
                    "diffuse_bounces": 3, "glossy_bounces": 0, "clamp_indirect": 0.0, "light_tree": False},
}


class ConfigError(ValueError):
    """A bad option value; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class Intrinsics:
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def scaled_to(self, width: int, height: int) -> "Intrinsics":
        sx, sy = width / self.width, height / self.height
        return Intrinsics(width, height, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy)


@dataclass
class RenderConfig:
    scene: str = "indoor"               # indoor | outdoor | mixed
    indoor_ratio: float = 0.5           # share of indoor scenes when scene == mixed
    camera: str = "nyu"                 # preset name, or "custom" with `intrinsics`
    intrinsics: Intrinsics | None = None
    resolution: tuple[int, int] | None = (320, 240)  # scales the preset; None = native
    profile: str = "fast"
    views_per_scene: int = 4            # several views amortize building a scene
    samples_per_shard: int = 64
    depth_scale: float | None = None    # None: 1000 (mm) for indoor, 256 for outdoor/mixed
    max_depth_m: float | None = None    # beyond: invalid. None: 20 m indoor, 120 m outdoor/mixed
    assets: list[str] = field(default_factory=list)  # user library folders, in order
    builtin_assets: bool = True

    def validate(self) -> None:
        if self.scene not in SCENE_FAMILIES:
            raise ConfigError(f"unknown scene family {self.scene!r}; choose one of {', '.join(SCENE_FAMILIES)}")
        if not 0.0 <= self.indoor_ratio <= 1.0:
            raise ConfigError(f"--indoor-ratio must be within [0, 1], got {self.indoor_ratio}")
        if self.camera != "custom" and self.camera not in CAMERA_PRESETS:
            raise ConfigError(
                f"unknown camera preset {self.camera!r}; choose one of {', '.join(CAMERA_PRESETS)} "
                "or give --intrinsics fx,fy,cx,cy,W,H")
        if self.profile not in RENDER_PROFILES:
            raise ConfigError(f"unknown render profile {self.profile!r}; choose one of {', '.join(RENDER_PROFILES)}")
        if self.views_per_scene < 1:
            raise ConfigError("--views-per-scene must be at least 1")
        if self.samples_per_shard < 1:
            raise ConfigError("--shard-size must be at least 1")
        if self.resolution is not None and (self.resolution[0] < 8 or self.resolution[1] < 8):
            raise ConfigError(f"--resolution {self.resolution[0]}x{self.resolution[1]} is too small (min 8x8)")
        if self.depth_scale is not None and self.depth_scale <= 0:
            raise ConfigError("--depth-scale must be positive")
        if not self.builtin_assets and not self.assets:
            raise ConfigError("--no-builtin-assets needs at least one --assets DIR")

    def resolved_intrinsics(self) -> Intrinsics:
        base = self.intrinsics if self.camera == "custom" else Intrinsics(*CAMERA_PRESETS[self.camera])
        if base is None:
            raise ConfigError("camera 'custom' needs --intrinsics fx,fy,cx,cy,W,H")
        return base if self.resolution is None else base.scaled_to(*self.resolution)

    def resolved_depth_scale(self) -> float:
        if self.depth_scale is not None:
            return float(self.depth_scale)
        return 1000.0 if self.scene == "indoor" else 256.0

    def resolved_max_depth(self) -> float:
        if self.max_depth_m is not None:
            return float(self.max_depth_m)
        limit = 20.0 if self.scene == "indoor" else 120.0
        return min(limit, 65535 / self.resolved_depth_scale())

    def render_settings(self) -> dict[str, Any]:
        return dict(RENDER_PROFILES[self.profile])

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as stored in the manifest (and compared on resume)."""
        d = dataclasses.asdict(self)
        d["intrinsics"] = dataclasses.asdict(self.resolved_intrinsics())
        d["resolution"] = list(self.resolution) if self.resolution else None
        d["depth_scale"] = self.resolved_depth_scale()
        d["max_depth_m"] = self.resolved_max_depth()
        d["render"] = self.render_settings()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RenderConfig":
        d = dict(d)
        d.pop("render", None)
        d["intrinsics"] = Intrinsics(**d["intrinsics"]) if d.get("intrinsics") else None
        d["resolution"] = tuple(d["resolution"]) if d.get("resolution") else None
        return cls(**d)


def parse_resolution(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise ConfigError(f"--resolution must look like 320x240, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def parse_intrinsics(text: str) -> Intrinsics:
    parts = text.split(",")
    try:
        fx, fy, cx, cy, w, h = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--intrinsics must be fx,fy,cx,cy,W,H (six numbers), got {text!r}") from None
    if min(fx, fy, w, h) <= 0:
        raise ConfigError(f"--intrinsics: focal lengths and size must be positive, got {text!r}")
    return Intrinsics(int(w), int(h), fx, fy, cx, cy)
