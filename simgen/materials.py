"""Materials: a JSON-able record per object, drawn from (rng, library, category, style).

Two styles (`--materials`):
- `plausible` (default): each kind of object draws from material families with realistic colour,
  roughness and metallic ranges (painted walls, wood, fabric, tiles, metal, plastic, ...) and the
  textures of matching kinds. Real-trained teachers read such rooms better (docs/rendering.md).
- `random`: the first round's domain randomisation: any saturated colour, any roughness, any
  texture, on anything. Domain randomisation is part of the method; this keeps it at hand.

A texture's kind is its `kind` field in library.json, else the first kind its name contains
(`Wood049` -> wood); textures of no known kind are drawn for any material now and then
(`UNKNOWN_KIND_P`), so a user's texture pack always shows up.
"""

from __future__ import annotations

import colorsys
import math
from typing import Any

import numpy as np

from simgen.assets import Library

Record = dict[str, Any]
MATERIAL_STYLES = ("plausible", "random")

# Family: HSV colour ranges, roughness, metallic, the texture kinds that suit it and how often one
# is used (else a plain colour, or now and then a procedural pattern of Cycles' own).
MATERIAL_FAMILIES: dict[str, dict[str, Any]] = {
    "paint": dict(hue=(0.0, 1.0), sat=(0.0, 0.25), val=(0.6, 0.95), rough=(0.6, 0.95), metal=0.0,
                  kinds=("plaster",), texture_p=0.6),
    "wood": dict(hue=(0.05, 0.11), sat=(0.3, 0.7), val=(0.3, 0.8), rough=(0.35, 0.8), metal=0.0,
                 kinds=("wood", "laminate"), texture_p=0.9),
    "fabric": dict(hue=(0.0, 1.0), sat=(0.05, 0.55), val=(0.2, 0.85), rough=(0.8, 1.0), metal=0.0,
                   kinds=("fabric", "carpet"), texture_p=0.8),
    "carpet": dict(hue=(0.0, 1.0), sat=(0.05, 0.4), val=(0.2, 0.7), rough=(0.85, 1.0), metal=0.0,
                   kinds=("carpet",), texture_p=0.95),
    "tiles": dict(hue=(0.0, 1.0), sat=(0.0, 0.2), val=(0.5, 0.95), rough=(0.1, 0.4), metal=0.0,
                  kinds=("tiles", "marble"), texture_p=0.9),
    "stone": dict(hue=(0.05, 0.15), sat=(0.0, 0.15), val=(0.35, 0.8), rough=(0.5, 0.9), metal=0.0,
                  kinds=("concrete", "marble"), texture_p=0.8),
    "metal": dict(hue=(0.0, 1.0), sat=(0.0, 0.08), val=(0.45, 0.9), rough=(0.15, 0.5), metal=1.0,
                  kinds=(), texture_p=0.0),
    "plastic": dict(hue=(0.0, 1.0), sat=(0.1, 0.75), val=(0.15, 0.9), rough=(0.3, 0.6), metal=0.0,
                    kinds=(), texture_p=0.0),
    "dark_plastic": dict(hue=(0.0, 1.0), sat=(0.0, 0.1), val=(0.03, 0.2), rough=(0.2, 0.5), metal=0.0,
                         kinds=(), texture_p=0.0),
    "ceramic": dict(hue=(0.0, 1.0), sat=(0.0, 0.45), val=(0.55, 0.95), rough=(0.05, 0.3), metal=0.0,
                    kinds=(), texture_p=0.0),
    "paper": dict(hue=(0.0, 1.0), sat=(0.0, 0.6), val=(0.4, 0.95), rough=(0.7, 0.95), metal=0.0,
                  kinds=("paper",), texture_p=0.85),
    "cardboard": dict(hue=(0.07, 0.1), sat=(0.35, 0.55), val=(0.45, 0.7), rough=(0.8, 1.0), metal=0.0,
                      kinds=(), texture_p=0.0),
    "foliage": dict(hue=(0.22, 0.36), sat=(0.4, 0.8), val=(0.2, 0.55), rough=(0.5, 0.8), metal=0.0,
                    kinds=("grass",), texture_p=0.5),
    "asphalt": dict(hue=(0.0, 1.0), sat=(0.0, 0.05), val=(0.25, 0.45), rough=(0.8, 1.0), metal=0.0,
                    kinds=("asphalt",), texture_p=0.95),
    "facade": dict(hue=(0.0, 0.15), sat=(0.0, 0.3), val=(0.5, 0.9), rough=(0.6, 0.95), metal=0.0,
                   kinds=("facade", "brick", "concrete"), texture_p=0.9),
    "car_paint": dict(hue=(0.0, 1.0), sat=(0.0, 0.8), val=(0.1, 0.9), rough=(0.1, 0.35), metal=0.5,
                      kinds=(), texture_p=0.0),
    "marking": dict(hue=(0.0, 1.0), sat=(0.0, 0.05), val=(0.85, 0.95), rough=(0.6, 0.8), metal=0.0,
                    kinds=(), texture_p=0.0),
}

# Which families each category draws from (uniformly). Categories not listed (a user's own) use
# DEFAULT_FAMILIES.
CATEGORY_FAMILIES: dict[str, tuple[str, ...]] = {
    "floor": ("wood", "tiles", "carpet", "stone"), "wall": ("paint",), "ceiling": ("paint",),
    "door": ("wood", "paint"), "frame": ("paint", "wood", "metal"), "skirting": ("paint", "wood"),
    "rug": ("carpet", "fabric"), "picture": ("paper",), "curtain": ("fabric",),
    "counter": ("wood", "paint", "plastic"), "worktop": ("stone", "wood", "tiles"),
    "wall_cabinet": ("wood", "paint", "plastic"), "light": ("paint",),
    "chair": ("wood", "plastic", "metal", "fabric"), "table": ("wood", "wood", "plastic", "stone"),
    "desk": ("wood", "plastic"), "round_table": ("wood", "stone"), "sofa": ("fabric",), "bed": ("fabric",),
    "shelf": ("wood", "plastic", "metal"), "cabinet": ("wood", "plastic", "metal"), "lamp": ("metal", "plastic"),
    "plant": ("foliage",), "box": ("cardboard", "plastic"), "mug": ("ceramic",), "bowl": ("ceramic",),
    "vase": ("ceramic",), "bottle": ("plastic",), "books": ("paper",), "monitor": ("dark_plastic",),
    "ground": ("foliage", "stone"), "road": ("asphalt",), "sidewalk": ("stone",), "kerb": ("stone",),
    "building": ("facade",), "lane_marking": ("marking",), "car": ("car_paint",), "van": ("car_paint",),
    "truck": ("car_paint",), "pole": ("metal",), "streetlight": ("metal",), "tree": ("foliage",),
    "bush": ("foliage",), "hydrant": ("car_paint",), "bench": ("wood", "metal"), "trash_bin": ("metal", "plastic"),
}
DEFAULT_FAMILIES = ("wood", "plastic", "metal", "fabric")
UNKNOWN_KIND_P = 0.2  # chance that a material uses a texture of no known kind (a user's), when any exists
PROCEDURAL_P = 0.15   # chance of one of Cycles' procedural patterns on an untextured plausible material

# The random style's texture chances per category (the first round's values; others 0.4).
RANDOM_TEXTURE_P = {"floor": 0.7, "wall": 0.25, "ceiling": 0.0, "ground": 0.6, "road": 0.8, "sidewalk": 0.6,
                    "building": 0.5}
RANDOM_WALL_PALETTE = ("wall", "ceiling", "building")  # light, low-saturation colours even when random


def texture_kind(texture: Record) -> str | None:
    if texture.get("kind"):
        return str(texture["kind"])
    name = str(texture.get("name", "")).lower()
    return next((k for f in MATERIAL_FAMILIES.values() for k in f["kinds"] if k in name), None)


def _rounded(values) -> list[float]:
    return [round(float(v), 4) for v in values]


def _pick_texture(rng: np.random.Generator, textures: list[Record], mat: Record) -> None:
    tex = textures[int(rng.integers(len(textures)))]
    mat["texture"] = tex["maps"]
    mat["tile_m"] = round(float(tex.get("tile_m", 1.0)) * float(rng.uniform(0.7, 1.4)), 4)


def plausible_material(rng: np.random.Generator, library: Library, category: str) -> Record:
    family = MATERIAL_FAMILIES[str(rng.choice(CATEGORY_FAMILIES.get(category, DEFAULT_FAMILIES)))]
    hsv = [rng.uniform(*family[k]) for k in ("hue", "sat", "val")]
    mat: Record = {"base_color": _rounded(colorsys.hsv_to_rgb(*hsv)),
                   "roughness": round(float(rng.uniform(*family["rough"])), 4),
                   "metallic": float(family["metal"]), "texture": None, "tile_m": 1.0, "procedural": None}
    matching = [t for t in library.textures if texture_kind(t) in family["kinds"]]
    unknown = [t for t in library.textures if texture_kind(t) is None]
    if unknown and rng.random() < UNKNOWN_KIND_P:
        _pick_texture(rng, unknown, mat)
    elif matching and rng.random() < family["texture_p"]:
        _pick_texture(rng, matching, mat)
    elif not family["metal"] and rng.random() < PROCEDURAL_P:
        mat["procedural"] = "noise"
        mat["tile_m"] = round(float(rng.uniform(0.1, 1.0)), 4)
    return mat


def random_material(rng: np.random.Generator, library: Library, category: str) -> Record:
    """The first round's materials: saturated random colours, any texture, any roughness."""
    texture_p = RANDOM_TEXTURE_P.get(category, 0.4)
    if category in RANDOM_WALL_PALETTE:
        base = rng.uniform(0.55, 0.95) * np.array([1.0, rng.uniform(0.92, 1.0), rng.uniform(0.82, 1.0)])
    else:
        base = rng.uniform(0.05, 0.95, 3)
    mat: Record = {
        "base_color": _rounded(base),
        "roughness": round(float(rng.uniform(0.2, 1.0)), 4),
        "metallic": round(float(rng.uniform(0.0, 1.0) if rng.random() < 0.2 else 0.0), 4),
        "texture": None, "tile_m": 1.0, "procedural": None,
    }
    r = rng.random()
    if library.textures and r < texture_p:
        _pick_texture(rng, library.textures, mat)
    elif r < texture_p + 0.2:
        mat["procedural"] = str(rng.choice(["noise", "checker", "wave", "voronoi"]))
        mat["tile_m"] = round(float(rng.uniform(0.2, 2.0)), 4)
    return mat


def sample_material(rng: np.random.Generator, library: Library, category: str, style: str = "plausible") -> Record:
    if style == "random":
        return random_material(rng, library, category)
    return plausible_material(rng, library, category)


def kelvin_to_rgb(kelvin: float) -> list[float]:
    """Approximate blackbody colour (Tanner Helland's fit), normalised to max 1."""
    t = kelvin / 100.0
    r = 255.0 if t <= 66 else 329.698727446 * (t - 60) ** -0.1332047592
    g = 99.4708025861 * math.log(t) - 161.1195681661 if t <= 66 else 288.1221695283 * (t - 60) ** -0.0755148492
    b = 255.0 if t >= 66 else (0.0 if t <= 19 else 138.5177312231 * math.log(t - 10) - 305.0447927307)
    rgb = np.clip([r, g, b], 0, 255) / 255.0
    return [round(float(v), 4) for v in rgb / rgb.max()]


def emissive(material: Record, strength: float) -> Record:
    """The material glowing in its own colour (lamp shades, ceiling panels)."""
    return dict(material, emission=round(float(strength), 3))
