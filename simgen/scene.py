"""Scene sampling: a pure function of (config, library, seed, index) -> a JSON-able scene record.

No Blender here: the sampler decides room/street layout, object poses, materials, lights and
camera poses with numpy alone, so every constraint (no interpenetration, camera inside the
room and outside objects) is testable without rendering. `simgen.worker` turns a record into a
Blender scene. Rooms come from simgen.indoor (room types, viewpoints), streets from
simgen.outdoor, shared placing from simgen.layout, materials from simgen.materials.
Conventions: metres, Z up; a mesh's origin is the centre of its bottom face; objects standing
against a wall have their back on their local +Y side.

Sample i belongs to scene i // views_per_scene; its camera is drawn from (seed, i, attempt), so
a rejected view is replaced by the next attempt and sample i stays a function of (config, seed, i).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from simgen.assets import Library
from simgen.config import RenderConfig
from simgen.indoor import build_room
from simgen.rooms import DEFAULT_ROOMS, VIEWPOINT_MIX, VIEWPOINTS
from simgen.layout import Builder, footprint, footprint_corners, point_in_footprint, top
from simgen.outdoor import build_street

Record = dict[str, Any]


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """An independent generator for one (seed, purpose, index, ...) tuple."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *[int(k) for k in keys]])


TABLETOP_TRIES = 25  # candidate tabletop poses before a sample falls back to a handheld view

# Purposes, so that the streams of scenes, views, families and room types never coincide.
_FAMILY, _SCENE, _VIEW, _ROOM = 1, 2, 3, 4


def scene_family(config: RenderConfig, seed: int, scene_index: int) -> str:
    if config.scene != "mixed":
        return config.scene
    return "indoor" if rng_for(seed, _FAMILY, scene_index).random() < config.indoor_ratio else "outdoor"


def room_type(config: RenderConfig, seed: int, scene_index: int) -> str:
    """The room type of an indoor scene: uniform over --rooms (default: DEFAULT_ROOMS)."""
    rooms = config.rooms or DEFAULT_ROOMS
    return rooms[int(rng_for(seed, _ROOM, scene_index).integers(len(rooms)))]


def sample_scene(config: RenderConfig, library: Library, seed: int, scene_index: int) -> Record:
    family = scene_family(config, seed, scene_index)
    builder = Builder(rng_for(seed, _SCENE, scene_index), library, config.materials)
    if family == "indoor":
        scene = build_room(builder, room_type(config, seed, scene_index))
    else:
        scene = build_street(builder)
    # Instance ids: 1.. in order, structure first. They index `instances` in every sample's JSON.
    for i, item in enumerate(scene["structure"] + scene["objects"], start=1):
        item["id"] = i
    for item in scene["objects"]:
        if "on" in item:
            item["on"] = scene["objects"][item["on"]]["id"]
    scene.update(seed=int(seed), scene_index=int(scene_index))
    return scene


def instances(scene: Record) -> list[Record]:
    return [{"id": o["id"], "category": o["category"], "asset": o.get("asset"), "thing": o["thing"]}
            for o in scene["structure"] + scene["objects"]]


# --------------------------------------------------------------------------------------- cameras


def look_at(position: np.ndarray, target: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """Camera-to-world 4x4 in Blender's convention (camera looks down its -Z, +Y up)."""
    f = target - position
    f = f / np.linalg.norm(f)
    r = np.cross(f, [0.0, 0.0, 1.0])
    r = r / (np.linalg.norm(r) + 1e-12)
    u = np.cross(r, f)
    c, s = math.cos(roll), math.sin(roll)
    r, u = c * r + s * u, -s * r + c * u
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = r, u, -f, position
    return m


def _aim(position: np.ndarray, target: np.ndarray, pitch_range: tuple[float, float], rng) -> np.ndarray:
    d = target - position
    yaw = math.atan2(d[1], d[0]) + rng.uniform(-0.15, 0.15)
    pitch = math.atan2(d[2], math.hypot(d[0], d[1]))
    pitch = float(np.clip(pitch + rng.uniform(-0.05, 0.05), *np.radians(pitch_range)))
    return position + np.array([math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch), math.sin(pitch)])


def camera_blocked(scene: Record, p: np.ndarray, clearance: float) -> bool:
    """True when point p is inside (or within `clearance` of) an object or building."""
    for o in scene["objects"]:
        if p[2] < top(o) + clearance and point_in_footprint(p[:2], footprint(o), clearance):
            return True
    for b in scene["structure"]:
        if b["category"] == "building":
            x, y, _ = b["location"]
            if p[2] < b["size"][2] + clearance and point_in_footprint(
                    p[:2], footprint_corners(x, y, b["size"][0] / 2, b["size"][1] / 2, 0.0), clearance):
                return True
    return False


def viewpoint_for(config: RenderConfig, rng: np.random.Generator) -> str:
    if config.viewpoint != "mixed":
        return config.viewpoint
    names = list(VIEWPOINT_MIX)
    return names[int(rng.choice(len(names), p=list(VIEWPOINT_MIX.values())))]


def _room_view(scene: Record, viewpoint: str, rng: np.random.Generator):
    """A camera position and look-at target in a room for a height/pitch viewpoint, or None."""
    W, D, H = scene["room"]
    vp = VIEWPOINTS[viewpoint]
    lo, hi = vp["height"]
    p = np.array([rng.uniform(0.3, W - 0.3), rng.uniform(0.3, D - 0.3), rng.uniform(lo, min(hi, H - 0.3))])
    if camera_blocked(scene, p, 0.25):
        return None
    things = [o for o in scene["objects"] if o["thing"]]
    if things and rng.random() < 0.7:
        o = things[int(rng.integers(len(things)))]
        target = np.array(o["location"]) + [0, 0, o["extent"][2] / 2]
    else:
        target = np.array([rng.uniform(0, W), rng.uniform(0, D), rng.uniform(0.3, 1.8)])
    if np.linalg.norm(target[:2] - p[:2]) < 0.5:
        return None
    return p, _aim(p, target, vp["pitch"], rng)


def _tabletop_view(scene: Record, rng: np.random.Generator):
    """A camera looking down at a table, desk or counter top (at what stands on it, if anything)."""
    W, D, H = scene["room"]
    tops = [o for o in scene["objects"] if o.get("supports") and 0.3 < top(o) < 1.3]
    if not tops:
        return None
    sup = tops[int(rng.integers(len(tops)))]
    items = [o for o in scene["objects"] if o.get("on") == sup["id"]]
    if items and rng.random() < 0.8:
        o = items[int(rng.integers(len(items)))]
        target = np.array(o["location"]) + [0, 0, o["extent"][2] / 2]
    else:
        target = np.array([*sup["location"][:2], top(sup)])
    vp = VIEWPOINTS["tabletop"]
    pitch, heading = math.radians(rng.uniform(*vp["pitch"])), rng.uniform(-math.pi, math.pi)
    forward = np.array([math.cos(heading) * math.cos(pitch), math.sin(heading) * math.cos(pitch), math.sin(pitch)])
    p = target - forward * rng.uniform(*vp["distance"])
    if not (0.15 < p[0] < W - 0.15 and 0.15 < p[1] < D - 0.15 and p[2] < H - 0.15) or camera_blocked(scene, p, 0.1):
        return None
    return p, target


def _street_view(scene: Record, rng: np.random.Generator):
    road_w, _ = scene["road"]
    p = np.array([rng.uniform(-30, 30), rng.uniform(-road_w / 4 - 1, road_w / 4 + 1), rng.uniform(1.4, 2.0)])
    if camera_blocked(scene, p, 0.5):
        return None
    heading = (0.0 if rng.random() < 0.5 else math.pi) + rng.uniform(-0.45, 0.45)
    pitch = math.radians(rng.uniform(-8, 3))
    return p, p + [math.cos(heading) * math.cos(pitch), math.sin(heading) * math.cos(pitch), math.sin(pitch)]


def sample_camera(config: RenderConfig, scene: Record, seed: int, sample_index: int, attempt: int) -> Record:
    """One candidate camera pose for sample `sample_index` (a later attempt replaces a rejected one).
    Indoors the viewpoint (VIEWPOINTS) is drawn per sample; a tabletop view in a room without a
    free table top falls back to a handheld one."""
    rng = rng_for(seed, _VIEW, sample_index, attempt)
    viewpoint = viewpoint_for(config, rng) if scene["family"] == "indoor" else "street"
    for k in range(50):
        if viewpoint == "tabletop" and k == TABLETOP_TRIES:
            viewpoint = "handheld"  # no free table top in reach
        if viewpoint == "street":
            view, roll = _street_view(scene, rng), rng.uniform(-3, 3)
        elif viewpoint == "tabletop":
            view, roll = _tabletop_view(scene, rng), rng.uniform(-10, 10)
        else:
            view, roll = _room_view(scene, viewpoint, rng), rng.uniform(-5, 5)
        if view is None:
            continue
        cam2world = look_at(view[0], view[1], math.radians(roll))
        return {"cam2world": [[round(float(v), 6) for v in row] for row in cam2world], "attempt": attempt,
                "viewpoint": viewpoint}
    raise RuntimeError(f"scene {scene['scene_index']}: no free camera position found")
