"""Scene sampling: a pure function of (config, library, seed, index) -> a JSON-able scene record.

No Blender here: the sampler decides room/street layout, object poses, materials, lights and
camera poses with numpy alone, so every constraint (no interpenetration, camera inside the
room and outside objects) is testable without rendering. `simgen.worker` turns a record into a
Blender scene. Conventions: metres, Z up; a mesh's origin is the centre of its bottom face;
objects standing against a wall have their back on their local +Y side.

Sample i belongs to scene i // views_per_scene; its camera is drawn from (seed, i, attempt), so
a rejected view is replaced by the next attempt and sample i stays a function of (config, seed, i).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from simgen.assets import Library
from simgen.config import RenderConfig

Record = dict[str, Any]


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """An independent generator for one (seed, purpose, index, ...) tuple."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *[int(k) for k in keys]])


# Purposes, so that the streams of scenes, views and families never coincide.
_FAMILY, _SCENE, _VIEW = 1, 2, 3


def scene_family(config: RenderConfig, seed: int, scene_index: int) -> str:
    if config.scene != "mixed":
        return config.scene
    return "indoor" if rng_for(seed, _FAMILY, scene_index).random() < config.indoor_ratio else "outdoor"


# ---------------------------------------------------------------------------- footprint geometry


def footprint_corners(x: float, y: float, hx: float, hy: float, yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    local = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]])
    return local @ np.array([[c, s], [-s, c]]) + [x, y]


def footprints_overlap(a: np.ndarray, b: np.ndarray, gap: float = 0.0) -> bool:
    """Separating-axis test for two convex quads (4x2 corners); `gap` keeps them that far apart."""
    for poly in (a, b):
        for i in range(4):
            edge = poly[(i + 1) % 4] - poly[i]
            axis = np.array([-edge[1], edge[0]]) / (np.hypot(*edge) + 1e-12)
            pa, pb = a @ axis, b @ axis
            if pa.max() + gap <= pb.min() or pb.max() + gap <= pa.min():
                return False
    return True


def point_in_footprint(p: np.ndarray, corners: np.ndarray, margin: float = 0.0) -> bool:
    """Whether p lies inside the quad (corners counter-clockwise) grown by `margin`."""
    for i in range(4):
        edge = corners[(i + 1) % 4] - corners[i]
        normal = np.array([edge[1], -edge[0]]) / (np.hypot(*edge) + 1e-12)  # outward
        if (p - corners[i]) @ normal > margin:
            return False
    return True


# ------------------------------------------------------------------------------------- materials


def sample_material(rng: np.random.Generator, library: Library, texture_p: float = 0.5,
                    palette: str = "any") -> Record:
    if palette == "wall":
        base = rng.uniform(0.55, 0.95) * np.array([1.0, rng.uniform(0.92, 1.0), rng.uniform(0.82, 1.0)])
    else:
        base = rng.uniform(0.05, 0.95, 3)
    mat: Record = {
        "base_color": [round(float(v), 4) for v in base],
        "roughness": round(float(rng.uniform(0.2, 1.0)), 4),
        "metallic": round(float(rng.uniform(0.0, 1.0) if rng.random() < 0.2 else 0.0), 4),
        "texture": None, "tile_m": 1.0, "procedural": None,
    }
    r = rng.random()
    if library.textures and r < texture_p:
        tex = library.textures[int(rng.integers(len(library.textures)))]
        mat["texture"] = tex["maps"]
        mat["tile_m"] = float(tex.get("tile_m", 1.0)) * float(rng.uniform(0.7, 1.4))
    elif r < texture_p + 0.2:
        mat["procedural"] = str(rng.choice(["noise", "checker", "wave", "voronoi"]))
        mat["tile_m"] = round(float(rng.uniform(0.2, 2.0)), 4)
    return mat


def _kelvin_to_rgb(kelvin: float) -> list[float]:
    """Approximate blackbody colour (Tanner Helland's fit), normalised to max 1."""
    t = kelvin / 100.0
    r = 255.0 if t <= 66 else 329.698727446 * (t - 60) ** -0.1332047592
    g = 99.4708025861 * math.log(t) - 161.1195681661 if t <= 66 else 288.1221695283 * (t - 60) ** -0.0755148492
    b = 255.0 if t >= 66 else (0.0 if t <= 19 else 138.5177312231 * math.log(t - 10) - 305.0447927307)
    rgb = np.clip([r, g, b], 0, 255) / 255.0
    return [round(float(v), 4) for v in rgb / rgb.max()]


# ---------------------------------------------------------------------------------- object records


def _scaled_extent(rng: np.random.Generator, mesh: Record) -> tuple[float, np.ndarray]:
    bbox = np.asarray(mesh["bbox"], float)
    if "size_m" in mesh:
        lo, hi = mesh["size_m"]
        scale = float(rng.uniform(lo, hi)) / float(bbox.max())
    else:
        jitter = float(mesh.get("scale_jitter", 0.0))
        scale = float(mesh["scale"]) * float(1 + rng.uniform(-jitter, jitter))
    return scale, bbox * scale


def _object(mesh: Record, scale: float, extent: np.ndarray, x: float, y: float, z: float, yaw: float,
            rng: np.random.Generator, library: Library) -> Record:
    # Keep the asset's own look sometimes when it has one; our OBJ meshes have none.
    return {
        "kind": "mesh", "asset": mesh["name"], "file": mesh["file"], "up": mesh.get("up", "z"),
        "category": mesh["category"], "thing": bool(mesh.get("thing", True)),
        "location": [round(float(x), 4), round(float(y), 4), round(float(z), 4)],
        "yaw": round(float(yaw), 5), "scale": round(scale, 6),
        "extent": [round(float(e), 4) for e in extent],
        "supports": bool(mesh.get("supports", False)),
        "material": sample_material(rng, library, texture_p=0.4),
    }


def _box(category: str, centre, size, material: Record, thing: bool = False) -> Record:
    return {"kind": "box", "category": category, "thing": thing, "asset": None,
            "location": [round(float(v), 4) for v in centre], "size": [round(float(v), 4) for v in size],
            "yaw": 0.0, "material": material}


def _footprint(obj: Record) -> np.ndarray:
    x, y, _ = obj["location"]
    ex, ey, _ = obj["extent"]
    return footprint_corners(x, y, ex / 2, ey / 2, obj["yaw"])


def _place(rng, candidates: list[Record], placed: list[Record], propose, library: Library,
           tries: int = 25, gap: float = 0.03) -> Record | None:
    """Try `propose(mesh, extent) -> (x, y, z, yaw) | None` until the footprint is free."""
    if not candidates:
        return None
    for _ in range(tries):
        mesh = candidates[int(rng.integers(len(candidates)))]
        scale, extent = _scaled_extent(rng, mesh)
        pose = propose(mesh, extent)
        if pose is None:
            continue
        obj = _object(mesh, scale, extent, *pose, rng=rng, library=library)
        fp = _footprint(obj)
        if not any(footprints_overlap(fp, _footprint(o), gap) for o in placed):
            return obj
    return None


def _place_many(rng, candidates: list[Record], placed: list[Record], propose, library: Library, count: int,
                gap: float = 0.03, accept=lambda obj: True) -> None:
    for _ in range(count):
        obj = _place(rng, candidates, placed, propose, library, gap=gap)
        if obj is not None and accept(obj):
            placed.append(obj)


# -------------------------------------------------------------------------------------- indoor


def _indoor(rng: np.random.Generator, library: Library) -> Record:
    W, D, H = rng.uniform(3.0, 8.0), rng.uniform(3.0, 9.0), rng.uniform(2.4, 3.2)
    t = 0.1  # wall thickness, outside the interior [0, W] x [0, D]
    floor_mat = sample_material(rng, library, texture_p=0.7)
    wall_mat = sample_material(rng, library, texture_p=0.25, palette="wall")
    structure = [
        _box("floor", (W / 2, D / 2, -t), (W + 2 * t, D + 2 * t, t), floor_mat),
        _box("ceiling", (W / 2, D / 2, H), (W + 2 * t, D + 2 * t, t), sample_material(rng, library, 0.0, "wall")),
    ]
    # walls: (axis-aligned centre line, length, along-x?) ; one may get a door opening
    walls = [((W / 2, -t / 2), W + 2 * t, True), ((W / 2, D + t / 2), W + 2 * t, True),
             ((-t / 2, D / 2), D, False), ((W + t / 2, D / 2), D, False)]
    door_wall = int(rng.integers(4)) if rng.random() < 0.35 else -1
    for i, ((cx, cy), length, along_x) in enumerate(walls):
        pieces = [(-length / 2, length / 2, 0.0, H)]
        if i == door_wall and length > 2.0:
            dw, dh = rng.uniform(0.8, 1.4), rng.uniform(2.0, min(2.3, H - 0.1))
            d0 = rng.uniform(-length / 2 + 0.3, length / 2 - 0.3 - dw)
            pieces = [(-length / 2, d0, 0.0, H), (d0 + dw, length / 2, 0.0, H), (d0, d0 + dw, dh, H)]
        for a, b, z0, z1 in pieces:
            mid, size = (a + b) / 2, b - a
            centre = (cx + mid, cy, z0) if along_x else (cx, cy + mid, z0)
            dims = (size, t, z1 - z0) if along_x else (t, size, z1 - z0)
            structure.append(_box("wall", centre, dims, wall_mat))

    objects: list[Record] = []
    big = library.meshes_for("indoor", "floor") + library.meshes_for("indoor", "wall")
    n_big = int(round(W * D / 3.5)) + int(rng.integers(2, 6))
    # inward normals of the walls y=0, y=D, x=0, x=W, and the yaw that turns local +Y (the back) to the wall
    wall_defs = [(np.array([0, 1.0]), math.pi), (np.array([0, -1.0]), 0.0),
                 (np.array([1.0, 0]), math.pi / 2), (np.array([-1.0, 0]), -math.pi / 2)]

    def propose(mesh, extent):
        ex, ey, _ = extent
        if mesh["placement"] == "wall" or rng.random() < 0.3:
            normal, yaw = wall_defs[int(rng.integers(4))]
            along = W if normal[0] == 0 else D
            if ex + 0.1 > along:
                return None
            s = rng.uniform(ex / 2 + 0.05, along - ex / 2 - 0.05)
            off = ey / 2 + 0.02
            if normal[0] == 0:
                x, y = s, (off if normal[1] > 0 else D - off)
            else:
                x, y = (off if normal[0] > 0 else W - off), s
            return x, y, 0.0, yaw
        yaw = rng.uniform(-math.pi, math.pi)
        x, y = rng.uniform(0, W), rng.uniform(0, D)
        corners = footprint_corners(x, y, ex / 2, ey / 2, yaw)
        if corners.min() < 0.02 or corners[:, 0].max() > W - 0.02 or corners[:, 1].max() > D - 0.02:
            return None
        return x, y, 0.0, yaw

    _place_many(rng, big, objects, propose, library, n_big, accept=lambda o: o["extent"][2] < H - 0.05)

    # Small things on top of supporting furniture.
    small = library.meshes_for("indoor", "surface")
    supports = [k for k, o in enumerate(objects) if o["supports"]]
    on_top: dict[int, list[Record]] = {}
    for _ in range(int(rng.integers(2, 4 + 2 * len(supports))) if supports and small else 0):
        k = supports[int(rng.integers(len(supports)))]
        sup = objects[k]
        sx, sy, _ = sup["location"]
        ex, ey, ez = sup["extent"]

        def propose_top(mesh, extent, sup=sup):
            hx, hy = ex / 2 - max(extent[:2]) / 2 - 0.01, ey / 2 - max(extent[:2]) / 2 - 0.01
            if hx <= 0 or hy <= 0 or ez + extent[2] > H - 0.05:
                return None
            lx, ly = rng.uniform(-hx, hx), rng.uniform(-hy, hy)
            c, s = math.cos(sup["yaw"]), math.sin(sup["yaw"])
            return sx + c * lx - s * ly, sy + s * lx + c * ly, ez, rng.uniform(-math.pi, math.pi)

        obj = _place(rng, small, on_top.get(k, []), propose_top, library, tries=8, gap=0.01)
        if obj is not None:
            obj["on"] = k  # index into objects; becomes the support's instance id below
            on_top.setdefault(k, []).append(obj)
    for k in sorted(on_top):
        objects += on_top[k]

    n_lights = int(rng.integers(1, 4))
    lights = []
    for _ in range(n_lights):
        kelvin = float(rng.uniform(2700, 6500))
        lights.append({"type": str(rng.choice(["POINT", "AREA"])),
                       "location": [float(rng.uniform(0.3, W - 0.3)), float(rng.uniform(0.3, D - 0.3)), float(H - 0.15)],
                       "color": _kelvin_to_rgb(kelvin), "kelvin": round(kelvin),
                       "energy": float(rng.uniform(60, 300) * W * D / 20 / n_lights)})
    world = {"color": [0.05, 0.05, 0.05], "strength": float(rng.uniform(0.5, 2.0)), "hdri": None}
    return {"family": "indoor", "room": [W, D, H], "structure": structure, "objects": objects,
            "lights": lights, "world": world}


# ------------------------------------------------------------------------------------- outdoor


def _outdoor(rng: np.random.Generator, library: Library) -> Record:
    road_w, walk_w = rng.uniform(6.0, 12.0), rng.uniform(1.5, 4.0)
    L = 200.0
    structure = [
        _box("ground", (0, 0, -0.1), (2 * L, 2 * L, 0.1), sample_material(rng, library, texture_p=0.6)),
        _box("road", (0, 0, -0.08), (2 * L, road_w, 0.1), sample_material(rng, library, texture_p=0.8)),
    ]
    walk_mat = sample_material(rng, library, texture_p=0.6)
    for side in (-1, 1):
        structure.append(_box("sidewalk", (0, side * (road_w / 2 + walk_w / 2), 0), (2 * L, walk_w, 0.15), walk_mat))
    building_mat = [sample_material(rng, library, texture_p=0.5, palette="wall") for _ in range(3)]
    for side in (-1, 1):
        if rng.random() < 0.15:
            continue  # an open side
        x = -80.0 + rng.uniform(0, 10)
        setback = rng.uniform(0, 5)
        while x < 80:
            w, d, h = rng.uniform(8, 25), rng.uniform(8, 20), rng.uniform(4, 30)
            y = side * (road_w / 2 + walk_w + setback + d / 2)
            structure.append(_box("building", (x + w / 2, y, 0), (w, d, h),
                                  building_mat[int(rng.integers(3))]))
            x += w + (rng.uniform(0, 8) if rng.random() < 0.5 else 0.0)

    objects: list[Record] = []
    vehicles = library.meshes_for("outdoor", "road")

    def on_road(mesh, extent):
        lane = rng.choice([-1, 1]) * rng.uniform(road_w / 4 - 0.5, road_w / 4 + 0.5)
        yaw = (0.0 if lane < 0 else math.pi) + rng.uniform(-0.1, 0.1)
        if rng.random() < 0.3:  # parked at the kerb
            lane = np.sign(lane) * (road_w / 2 - extent[1] / 2 - 0.2)
        return rng.uniform(-60, 60), lane, 0.0, yaw

    _place_many(rng, vehicles, objects, on_road, library, int(rng.integers(2, 10)), gap=0.5)

    roadside = library.meshes_for("outdoor", "roadside")

    def on_walk(mesh, extent):
        side = rng.choice([-1, 1])
        y = side * (road_w / 2 + rng.uniform(0.3 + extent[1] / 2, max(0.31 + extent[1] / 2, walk_w - 0.3)))
        return rng.uniform(-60, 60), y, 0.15, (0.0 if side > 0 else math.pi) + rng.uniform(-0.2, 0.2)

    _place_many(rng, roadside, objects, on_walk, library, int(rng.integers(4, 16)), gap=0.2)

    ground = library.meshes_for("outdoor", "ground")

    def off_road(mesh, extent):
        side = rng.choice([-1, 1])
        return rng.uniform(-60, 60), side * (road_w / 2 + walk_w + rng.uniform(0.5, 6)), 0.0, rng.uniform(-math.pi, math.pi)

    buildings = [b for b in structure if b["category"] == "building"]
    building_fps = [footprint_corners(b["location"][0], b["location"][1], b["size"][0] / 2, b["size"][1] / 2, 0.0)
                    for b in buildings]
    _place_many(rng, ground, objects, off_road, library, int(rng.integers(0, 8)), gap=0.2,
                accept=lambda o: not any(footprints_overlap(_footprint(o), fp) for fp in building_fps))

    elevation, azimuth = rng.uniform(15, 75), rng.uniform(0, 360)
    kelvin = float(rng.uniform(4500, 7000))
    lights = [{"type": "SUN", "elevation_deg": float(elevation), "azimuth_deg": float(azimuth),
               "color": _kelvin_to_rgb(kelvin), "kelvin": round(kelvin), "energy": float(rng.uniform(2.0, 6.0))}]
    sky = np.array([0.35, 0.55, 0.9]) * rng.uniform(0.6, 1.1) + rng.uniform(-0.1, 0.1, 3)
    world = {"color": [round(float(v), 4) for v in np.clip(sky, 0.05, 1.0)], "strength": float(rng.uniform(0.6, 1.5)),
             "hdri": library.hdris[int(rng.integers(len(library.hdris)))]["file"]
             if library.hdris and rng.random() < 0.5 else None}
    return {"family": "outdoor", "road": [road_w, walk_w], "structure": structure, "objects": objects,
            "lights": lights, "world": world}


def sample_scene(config: RenderConfig, library: Library, seed: int, scene_index: int) -> Record:
    family = scene_family(config, seed, scene_index)
    rng = rng_for(seed, _SCENE, scene_index)
    scene = _indoor(rng, library) if family == "indoor" else _outdoor(rng, library)
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
        top = o["location"][2] + o["extent"][2]
        if p[2] < top + clearance and point_in_footprint(p[:2], _footprint(o), clearance):
            return True
    for b in scene["structure"]:
        if b["category"] == "building":
            x, y, _ = b["location"]
            if p[2] < b["size"][2] + clearance and point_in_footprint(
                    p[:2], footprint_corners(x, y, b["size"][0] / 2, b["size"][1] / 2, 0.0), clearance):
                return True
    return False


def sample_camera(config: RenderConfig, scene: Record, seed: int, sample_index: int, attempt: int) -> Record:
    """One candidate camera pose for sample `sample_index` (a later attempt replaces a rejected one)."""
    rng = rng_for(seed, _VIEW, sample_index, attempt)
    for _ in range(50):
        if scene["family"] == "indoor":
            W, D, H = scene["room"]
            p = np.array([rng.uniform(0.3, W - 0.3), rng.uniform(0.3, D - 0.3), rng.uniform(0.9, min(1.9, H - 0.3))])
            if camera_blocked(scene, p, 0.25):
                continue
            things = [o for o in scene["objects"] if o["thing"]]
            if things and rng.random() < 0.7:
                o = things[int(rng.integers(len(things)))]
                target = np.array(o["location"]) + [0, 0, o["extent"][2] / 2]
            else:
                target = np.array([rng.uniform(0, W), rng.uniform(0, D), rng.uniform(0.3, 1.8)])
            if np.linalg.norm(target[:2] - p[:2]) < 0.5:
                continue
            target = _aim(p, target, (-40.0, 10.0), rng)
            roll = rng.uniform(-5, 5)
        else:
            road_w, _ = scene["road"]
            p = np.array([rng.uniform(-30, 30), rng.uniform(-road_w / 4 - 1, road_w / 4 + 1), rng.uniform(1.4, 2.0)])
            if camera_blocked(scene, p, 0.5):
                continue
            heading = (0.0 if rng.random() < 0.5 else math.pi) + rng.uniform(-0.45, 0.45)
            pitch = math.radians(rng.uniform(-8, 3))
            target = p + [math.cos(heading) * math.cos(pitch), math.sin(heading) * math.cos(pitch), math.sin(pitch)]
            roll = rng.uniform(-3, 3)
        cam2world = look_at(p, target, math.radians(roll))
        return {"cam2world": [[round(float(v), 6) for v in row] for row in cam2world], "attempt": attempt}
    raise RuntimeError(f"scene {scene['scene_index']}: no free camera position found")
