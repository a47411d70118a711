"""Outdoor streets: road with lane markings and kerbs, sidewalks, building facades, vehicles,
street furniture and a sun. `build_street(builder)` returns a scene record (see simgen.scene)."""

from __future__ import annotations

import math

import numpy as np

from simgen.layout import Builder, Record, footprint, footprint_corners, footprints_overlap
from simgen.materials import kelvin_to_rgb

HALF_LENGTH = 200.0          # the street runs along x over [-HALF_LENGTH, HALF_LENGTH]
ROAD_WIDTH, WALK_WIDTH = (6.0, 12.0), (1.5, 4.0)
KERB_WIDTH, KERB_HEIGHT, WALK_HEIGHT = 0.2, 0.16, 0.15
MARKING_WIDTH, MARKING_HEIGHT = 0.12, 0.005
DASH_LENGTH, DASH_PERIOD, DASHES_WITHIN = 3.0, 9.0, 60.0  # centre line dashes (m), drawn within +-60 m
ROAD_TOP = 0.02              # the road box spans z in [-0.08, 0.02]
BUILDING_SIZE = ((8.0, 25.0), (8.0, 20.0), (4.0, 30.0))
OPEN_SIDE_P = 0.15           # a side of the street without buildings


def _markings(b: Builder, road_w: float) -> list[Record]:
    paint = b.material("lane_marking")
    L = HALF_LENGTH
    boxes = [b.box("lane_marking", (0, side * (road_w / 2 - 0.3), ROAD_TOP), (2 * L, MARKING_WIDTH, MARKING_HEIGHT), paint)
             for side in (-1, 1)]
    offset = float(b.rng.uniform(0, DASH_PERIOD))
    for x in np.arange(-DASHES_WITHIN + offset, DASHES_WITHIN, DASH_PERIOD):
        boxes.append(b.box("lane_marking", (x, 0.0, ROAD_TOP), (DASH_LENGTH, MARKING_WIDTH, MARKING_HEIGHT), paint))
    return boxes


def _buildings(b: Builder, road_w: float, walk_w: float) -> list[Record]:
    rng, out = b.rng, []
    materials = [b.material("building") for _ in range(3)]
    for side in (-1, 1):
        if rng.random() < OPEN_SIDE_P:
            continue
        x = -80.0 + rng.uniform(0, 10)
        setback = rng.uniform(0, 5)
        while x < 80:
            w, d, h = (rng.uniform(*r) for r in BUILDING_SIZE)
            y = side * (road_w / 2 + walk_w + setback + d / 2)
            out.append(b.box("building", (x + w / 2, y, 0), (w, d, h), materials[int(rng.integers(3))]))
            x += w + (rng.uniform(0, 8) if rng.random() < 0.5 else 0.0)
    return out


def build_street(b: Builder) -> Record:
    rng, library, L = b.rng, b.library, HALF_LENGTH
    road_w, walk_w = rng.uniform(*ROAD_WIDTH), rng.uniform(*WALK_WIDTH)
    structure = [b.box("ground", (0, 0, -0.1), (2 * L, 2 * L, 0.1)),
                 b.box("road", (0, 0, -0.08), (2 * L, road_w, 0.1))]
    walk_mat, kerb_mat = b.material("sidewalk"), b.material("kerb")
    for side in (-1, 1):
        structure.append(b.box("sidewalk", (0, side * (road_w / 2 + walk_w / 2), 0), (2 * L, walk_w, WALK_HEIGHT),
                               walk_mat))
        structure.append(b.box("kerb", (0, side * (road_w / 2 + KERB_WIDTH / 2), 0), (2 * L, KERB_WIDTH, KERB_HEIGHT),
                               kerb_mat))
    structure += _markings(b, road_w)
    structure += _buildings(b, road_w, walk_w)

    objects: list[Record] = []

    def on_road(mesh, extent):
        lane = rng.choice([-1, 1]) * rng.uniform(road_w / 4 - 0.5, road_w / 4 + 0.5)
        yaw = (0.0 if lane < 0 else math.pi) + rng.uniform(-0.1, 0.1)
        if rng.random() < 0.3:  # parked at the kerb
            lane = np.sign(lane) * (road_w / 2 - extent[1] / 2 - 0.2)
        return rng.uniform(-60, 60), lane, 0.0, yaw

    b.place_many(library.meshes_for("outdoor", "road"), objects, on_road, int(rng.integers(2, 10)), gap=0.5)

    def on_walk(mesh, extent):
        side = rng.choice([-1, 1])
        y = side * (road_w / 2 + rng.uniform(0.3 + extent[1] / 2, max(0.31 + extent[1] / 2, walk_w - 0.3)))
        return rng.uniform(-60, 60), y, WALK_HEIGHT, (0.0 if side > 0 else math.pi) + rng.uniform(-0.2, 0.2)

    b.place_many(library.meshes_for("outdoor", "roadside"), objects, on_walk, int(rng.integers(4, 16)), gap=0.2)

    def off_road(mesh, extent):
        side = rng.choice([-1, 1])
        return rng.uniform(-60, 60), side * (road_w / 2 + walk_w + rng.uniform(0.5, 6)), 0.0, rng.uniform(-math.pi, math.pi)

    building_fps = [footprint_corners(s["location"][0], s["location"][1], s["size"][0] / 2, s["size"][1] / 2, 0.0)
                    for s in structure if s["category"] == "building"]
    b.place_many(library.meshes_for("outdoor", "ground"), objects, off_road, int(rng.integers(0, 8)), gap=0.2,
                 accept=lambda o: not any(footprints_overlap(footprint(o), fp) for fp in building_fps))

    elevation, azimuth = rng.uniform(15, 75), rng.uniform(0, 360)
    kelvin = float(rng.uniform(4500, 7000))
    lights = [{"type": "SUN", "elevation_deg": float(elevation), "azimuth_deg": float(azimuth),
               "color": kelvin_to_rgb(kelvin), "kelvin": round(kelvin), "energy": float(rng.uniform(2.0, 6.0))}]
    sky = np.array([0.35, 0.55, 0.9]) * rng.uniform(0.6, 1.1) + rng.uniform(-0.1, 0.1, 3)
    world = {"color": [round(float(v), 4) for v in np.clip(sky, 0.05, 1.0)], "strength": float(rng.uniform(0.6, 1.5)),
             "hdri": library.hdris[int(rng.integers(len(library.hdris)))]["file"]
             if library.hdris and rng.random() < 0.5 else None}
    return {"family": "outdoor", "road": [road_w, walk_w], "structure": structure, "objects": objects,
            "lights": lights, "world": world}
