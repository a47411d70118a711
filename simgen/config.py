"""Render configuration: one plain dataclass, resolved once, stored in the manifest.

Everything that changes what a sample looks like is in `RenderConfig`; how the work is run
(workers, executor, how many samples) is not, so a dataset can be extended or resumed with other
run options but never silently mixed with another config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simgen.rooms import DEFAULT_ROOMS, ROOM_TYPES, VIEWPOINTS
from simgen.materials import MATERIAL_STYLES
from simgen.options import ConfigError, Size, as_size, check_fields, option, parse_size

# Largest rendered side: beyond it a frame takes minutes and gigabytes (a typo like 100000x100000
# would run until killed).
MAX_RESOLUTION = 8192
# A resolution whose aspect ratio differs from the camera's by more than this stretches pixels.
ASPECT_TOLERANCE = 0.01

# Camera presets: (width, height, fx, fy, cx, cy) at the preset's native resolution.
CAMERA_PRESETS: dict[str, tuple[int, int, float, float, float, float]] = {
    "nyu": (640, 480, 518.9, 518.9, 320.0, 240.0),
    "kitti": (1242, 375, 721.5, 721.5, 621.0, 187.5),
}
SCENE_FAMILIES = ("indoor", "outdoor", "mixed")

# Render profiles. "fast" is the default: 3 samples, few bounces, denoised outside Blender by
# Open Image Denoise with the albedo pass as guide (simgen/denoise.py: noise sigma 16 -> 0.7 grey
# levels at 160x120 for ~0.07 s per frame; Cycles' own OIDN step cost ~1 s per 320x240 frame on 2
# cores). "noisy" is the same without the denoiser (the first round's default). "blenderproc" is
# BlenderProc's own defaults (1024 samples with adaptive threshold 0.01, OIDN denoiser, 3 bounces):
# the reference of scripts/bench_render.py and scripts/bench_noise.py. See docs/rendering.md.
POST_DENOISER = "post"  # denoiser value: OIDN on the worker's side, after Blender wrote the frame
RENDER_PROFILES: dict[str, dict[str, Any]] = {
    # clamp_indirect: Cycles' indirect sample clamp; at a few samples per pixel it removes the
    # white speckles (fireflies) of rare bright paths at no cost. 0 = Blender's default (10).
    # light_tree: Cycles' light tree (BlenderProc turns it off); measured 5% faster per frame here.
    # view_transform: "Standard" clips highlights as a camera does (real frames: 2.5% of pixels at
    # 250+); BlenderProc's "Filmic" compresses them (renders grey and flat: docs/rendering.md).
    "fast": {"samples": 3, "noise_threshold": 0.0, "denoiser": POST_DENOISER, "max_bounces": 2,
             "diffuse_bounces": 1, "glossy_bounces": 1, "clamp_indirect": 1.0, "light_tree": True,
             "view_transform": "Standard"},
    "noisy": {"samples": 3, "noise_threshold": 0.0, "denoiser": None, "max_bounces": 2,
              "diffuse_bounces": 1, "glossy_bounces": 1, "clamp_indirect": 1.0, "light_tree": True,
              "view_transform": "Standard"},
    "quality": {"samples": 32, "noise_threshold": 0.05, "denoiser": "INTEL", "max_bounces": 3,
                "diffuse_bounces": 2, "glossy_bounces": 1, "clamp_indirect": 3.0, "light_tree": True,
                "view_transform": "Standard"},
    "blenderproc": {"samples": 1024, "noise_threshold": 0.01, "denoiser": "INTEL", "max_bounces": 3,
                    "diffuse_bounces": 3, "glossy_bounces": 0, "clamp_indirect": 0.0, "light_tree": False,
                    "view_transform": "Filmic"},
}


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


def parse_resolution(text: str) -> Size | None:
    """'320x240' -> Size(320, 240); 'native' -> None (the camera's own size)."""
    if str(text).strip() == "native":
        return None
    try:
        return parse_size(text)
    except Exception:
        raise ConfigError(f"--resolution must look like 320x240 (WIDTHxHEIGHT) or 'native', got {text!r}") from None


def parse_intrinsics(text: str) -> Intrinsics:
    parts = text.split(",")
    try:
        fx, fy, cx, cy, w, h = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--intrinsics must be fx,fy,cx,cy,W,H (six numbers), got {text!r}") from None
    if min(fx, fy, w, h) <= 0:
        raise ConfigError(f"--intrinsics: focal lengths and size must be positive, got {text!r}")
    return Intrinsics(int(w), int(h), fx, fy, cx, cy)


@dataclass
class RenderConfig:
    """What a sample looks like. `simgen render` builds its flags from these fields."""

    scene: str = option("indoor", "scene family (mixed: see --indoor-ratio)", choices=SCENE_FAMILIES)
    indoor_ratio: float = option(0.5, "share of indoor scenes with --scene mixed", low=0, high=1)
    rooms: list[str] = option([], "indoor room type (repeat the flag for more)", repeat=True,
                              choices=tuple(ROOM_TYPES), metavar="TYPE", shown=", ".join(DEFAULT_ROOMS))
    materials: str = option("plausible", "plausible materials, or random colours", choices=MATERIAL_STYLES)
    viewpoint: str = option("mixed", "indoor cameras: person, robot, desk, any",
                            choices=("mixed", *VIEWPOINTS))
    camera: str = option("nyu", "intrinsics preset (or give --intrinsics)", choices=tuple(CAMERA_PRESETS))
    intrinsics: Intrinsics | None = option(None, "explicit fx,fy,cx,cy,W,H instead of --camera",
                                           parse=parse_intrinsics, metavar="FX,FY,CX,CY,W,H")
    resolution: Size | None = option(Size(320, 240), "WIDTHxHEIGHT, or native (the camera's)", parse=parse_resolution,
                                     metavar="WxH")
    profile: str = option("fast", "render settings: speed against quality",
                          choices=tuple(RENDER_PROFILES))
    views_per_scene: int = option(4, "camera views per built scene", low=1)
    samples_per_shard: int = option(64, "samples per shard file", aliases=("--shard-size",), low=1)
    depth_scale: float | None = option(None, "depth PNG units per metre", parse=float, shown="1000 indoor, 256 otherwise", positive=True)
    max_depth_m: float | None = option(None, "store depth beyond this (m) as invalid", parse=float,
                                       aliases=("--max-depth",), shown="20 indoor, 120 otherwise", positive=True)
    assets: list[str] = option([], "your asset library folder (repeatable)",
                               repeat=True, metavar="DIR")
    builtin_assets: bool = option(True, "use the built-in asset library")

    def __post_init__(self) -> None:
        self.assets = [str(Path(a).resolve()) for a in self.assets]  # one spelling per folder: resume compares it
        if self.resolution is not None:
            self.resolution = as_size(self.resolution)

    def validate(self) -> None:
        check_fields(self)  # scene, rooms, materials, viewpoint, profile (camera: a preset or custom, below)
        if self.camera != "custom" and self.camera not in CAMERA_PRESETS:
            raise ConfigError(
                f"unknown camera preset {self.camera!r}; choose one of {', '.join(CAMERA_PRESETS)} "
                "or give --intrinsics fx,fy,cx,cy,W,H")
        if self.resolution is not None:
            self._check_resolution(self.resolution)
        if not self.builtin_assets and not self.assets:
            raise ConfigError("--no-builtin-assets needs at least one --assets DIR")

    def _check_resolution(self, size: Size) -> None:
        if min(size) < 8 or max(size) > MAX_RESOLUTION:
            raise ConfigError(f"--resolution {size}: each side must be within 8 to {MAX_RESOLUTION} pixels")
        base = self.intrinsics if self.camera == "custom" else Intrinsics(*CAMERA_PRESETS[self.camera])
        if base is None:
            return
        aspect, native = size.width / size.height, base.width / base.height
        if abs(aspect / native - 1) > ASPECT_TOLERANCE and abs(size.height / size.width / native - 1) <= ASPECT_TOLERANCE:
            raise ConfigError(f"--resolution {size}: sizes are WIDTHxHEIGHT; the camera is {base.width}x{base.height}, "
                              f"so did you mean {size.height}x{size.width}?")

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
