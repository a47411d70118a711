"""Indoor rooms: room types people film, their furniture, openings, decor and lights.

`build_room(builder, room_type)` returns a scene record (see simgen.scene). Every range a room is
drawn from is a named constant in simgen/rooms.py. Room types name mesh categories; a library without a
category uses its other furniture in its place, and every room also gets a few meshes of
categories no room type names (a user's own), so swapped-in libraries always show up.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from simgen.layout import Builder, Record, footprint, footprint_corners, footprints_overlap, top
from simgen.materials import emissive, kelvin_to_rgb
from simgen.rooms import (AGAINST_WALL_P, ALIGNED_P, AREA_PER_OBJECT, COUNTER_DEPTH, COUNTER_HEIGHT, CURTAIN_P,
                          DAYLIGHT_KELVIN, DOOR_CLEARANCE, DOOR_CLOSED_P, DOOR_HEIGHT, DOOR_WIDTH, EXPOSURE_STOPS,
                          FRAME_DEPTH, FRAME_WIDTH, LAMP_KELVIN, LIGHT_PANELS, OTHER, PANEL_GLOW, PICTURE_CENTRE_Z,
                          PICTURE_HEIGHT, PICTURE_WIDTH, ROOM_TYPES, RUG_SIZE, SKIRTING_DEPTH, SKIRTING_HEIGHT,
                          SUN_ELEVATION_DEG, SUN_ENERGY, USER_EXTRAS, WALL_CABINET_DEPTH, WALL_CABINET_HEIGHT,
                          WALL_CABINET_Z, WALL_THICKNESS, WINDOW_HEIGHT, WINDOW_SILL, WINDOW_WIDTH, WORKTOP)


@dataclass
class Wall:
    """One wall's inner face: a point, the direction along it, the normal into the room."""
    origin: np.ndarray
    along: np.ndarray
    normal: np.ndarray
    length: float
    extend: float  # walls along x run past the corners by the wall thickness to close them

    @property
    def facing_yaw(self) -> float:
        """The yaw that turns an object's back (local +Y) to this wall."""
        return math.atan2(self.normal[0], -self.normal[1])

    def point(self, a: float, d: float) -> np.ndarray:
        return self.origin + self.along * a + self.normal * d

    def rect(self, a0: float, a1: float, d0: float, d1: float) -> tuple[np.ndarray, tuple[float, float]]:
        """Centre (x, y) and size (x, y) of the span [a0, a1] along the wall, [d0, d1] into the room."""
        c = self.point((a0 + a1) / 2, (d0 + d1) / 2)
        size = (a1 - a0, d1 - d0) if abs(self.along[0]) > 0.5 else (d1 - d0, a1 - a0)
        return c, size

    def zone(self, a0: float, a1: float, d0: float, d1: float) -> np.ndarray:
        c, (sx, sy) = self.rect(a0, a1, d0, d1)
        return footprint_corners(c[0], c[1], sx / 2, sy / 2, 0.0)


@dataclass
class Opening:
    wall: int
    a0: float
    a1: float
    z0: float
    z1: float
    kind: str  # door | window


def room_walls(W: float, D: float) -> list[Wall]:
    t = WALL_THICKNESS
    x, y = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    return [Wall(np.zeros(2), x, y, W, t), Wall(np.array([0.0, D]), x, -y, W, t),
            Wall(np.zeros(2), y, x, D, 0.0), Wall(np.array([W, 0.0]), y, -x, D, 0.0)]


class RoomBuilder:
    """One room being built: structure boxes, objects, keep-out zones, lights."""

    def __init__(self, b: Builder, room_type: str):
        self.b, self.rng, self.type, self.spec = b, b.rng, room_type, ROOM_TYPES[room_type]
        (w, d, h) = self.spec["size"]
        self.W, self.D, self.H = (float(self.rng.uniform(*r)) for r in (w, d, h))
        self.walls = room_walls(self.W, self.D)
        self.structure: list[Record] = []
        self.objects: list[Record] = []
        self.keep_out: list[np.ndarray] = []
        self.openings: list[Opening] = []
        self.wall_material = b.material("wall")

    def count(self, lo_hi: tuple[int, int]) -> int:
        return int(self.rng.integers(lo_hi[0], lo_hi[1] + 1))

    def wall_box(self, wall: Wall, a0, a1, z0, z1, d0, d1, category: str, material: Record | None = None) -> None:
        c, (sx, sy) = wall.rect(a0, a1, d0, d1)
        self.structure.append(self.b.box(category, (c[0], c[1], z0), (sx, sy, z1 - z0), material))

    # ------------------------------------------------------------------------- shell and openings

    def shell(self) -> None:
        W, D, H, t = self.W, self.D, self.H, WALL_THICKNESS
        self.structure.append(self.b.box("floor", (W / 2, D / 2, -t), (W + 2 * t, D + 2 * t, t)))
        self.structure.append(self.b.box("ceiling", (W / 2, D / 2, H), (W + 2 * t, D + 2 * t, t)))
        for _ in range(self.count(self.spec["doors"])):
            self._opening("door", DOOR_WIDTH, lambda: (0.0, min(float(self.rng.uniform(*DOOR_HEIGHT)), H - 0.15)))
        for _ in range(self.count(self.spec["windows"])):
            def heights():
                sill = float(self.rng.uniform(*WINDOW_SILL))
                return sill, min(sill + float(self.rng.uniform(*WINDOW_HEIGHT)), H - 0.25)
            self._opening("window", WINDOW_WIDTH, heights)
        skirting = self.b.material("skirting")
        for i, wall in enumerate(self.walls):
            for a0, a1, z0, z1 in self._wall_pieces(i):
                self.wall_box(wall, a0, a1, z0, z1, -t, 0.0, "wall", self.wall_material)
                if z0 == 0.0 and min(a1, wall.length) - max(a0, 0.0) > 0.05:
                    self.wall_box(wall, max(a0, 0.0), min(a1, wall.length), 0.0, SKIRTING_HEIGHT, 0.0,
                                  SKIRTING_DEPTH, "skirting", skirting)
        for o in self.openings:
            self._dress_opening(o)

    def _opening(self, kind: str, width_range, heights) -> None:
        for _ in range(20):
            i = int(self.rng.integers(4))
            if self.type == "corridor" and kind == "door" and self.rng.random() < 0.8:
                i = 2 + int(self.rng.integers(2))  # mostly along the long walls
            wall = self.walls[i]
            w = float(self.rng.uniform(*width_range))
            if w + 0.6 > wall.length:
                continue
            a0 = float(self.rng.uniform(0.3, wall.length - 0.3 - w))
            if any(o.wall == i and a0 < o.a1 + 0.3 and o.a0 < a0 + w + 0.3 for o in self.openings):
                continue
            z0, z1 = heights()
            self.openings.append(Opening(i, a0, a0 + w, z0, z1, kind))
            return

    def _wall_pieces(self, i: int) -> list[tuple[float, float, float, float]]:
        """The wall's boxes (a0, a1, z0, z1) around its openings."""
        wall, H = self.walls[i], self.H
        pieces, a = [], -wall.extend
        for o in sorted((o for o in self.openings if o.wall == i), key=lambda o: o.a0):
            pieces.append((a, o.a0, 0.0, H))
            if o.z0 > 0:
                pieces.append((o.a0, o.a1, 0.0, o.z0))
            pieces.append((o.a0, o.a1, o.z1, H))
            a = o.a1
        pieces.append((a, wall.length + wall.extend, 0.0, H))
        return [p for p in pieces if p[1] - p[0] > 1e-3 and p[3] - p[2] > 1e-3]

    def _dress_opening(self, o: Opening) -> None:
        wall, fw, fd = self.walls[o.wall], FRAME_WIDTH, FRAME_DEPTH
        frame = self.b.material("frame")
        self.wall_box(wall, o.a0 - fw, o.a0, o.z0, o.z1 + fw, 0.0, fd, "frame", frame)
        self.wall_box(wall, o.a1, o.a1 + fw, o.z0, o.z1 + fw, 0.0, fd, "frame", frame)
        self.wall_box(wall, o.a0 - fw, o.a1 + fw, o.z1, o.z1 + fw, 0.0, fd, "frame", frame)
        if o.kind == "door":
            if self.rng.random() < DOOR_CLOSED_P:
                self.wall_box(wall, o.a0, o.a1, 0.0, o.z1, -0.07, -0.03, "door")
            self.keep_out.append(wall.zone(o.a0 - 0.1, o.a1 + 0.1, 0.0, DOOR_CLEARANCE))
            return
        self.wall_box(wall, o.a0 - fw, o.a1 + fw, o.z0 - 0.03, o.z0, -0.05, 0.08, "frame", frame)  # sill
        if self.rng.random() < CURTAIN_P:
            fabric = self.b.material("curtain")
            z0 = 0.02 if self.rng.random() < 0.5 else max(o.z0 - 0.15, 0.02)
            z1 = min(o.z1 + 0.2, self.H - 0.02)
            for a0, a1 in ((max(o.a0 - 0.35, 0.02), o.a0 + 0.05), (o.a1 - 0.05, min(o.a1 + 0.35, wall.length - 0.02))):
                self.wall_box(wall, a0, a1, z0, z1, 0.04, 0.1, "curtain", fabric)
                self.keep_out.append(wall.zone(a0, a1, 0.0, 0.12))

    # ---------------------------------------------------------------------------------- furniture

    def meshes(self, category: str, named: set[str]) -> list[Record]:
        """Indoor floor/wall meshes of a category; OTHER, or a category the libraries lack: those
        of categories that no room type names."""
        lib = self.b.library
        big = lib.meshes_for("indoor", "floor") + lib.meshes_for("indoor", "wall")
        exact = [m for m in big if m["category"] == category]
        return exact or [m for m in big if m["category"] not in named]

    def propose_wall(self, mesh: Record, extent: np.ndarray):
        ex, ey, _ = extent
        wall = self.walls[int(self.rng.integers(4))]
        if ex + 0.1 > wall.length:
            return None
        p = wall.point(float(self.rng.uniform(ex / 2 + 0.05, wall.length - ex / 2 - 0.05)), ey / 2 + 0.02)
        return float(p[0]), float(p[1]), 0.0, wall.facing_yaw

    def propose_floor(self, mesh: Record, extent: np.ndarray):
        if mesh["placement"] == "wall" or self.rng.random() < AGAINST_WALL_P:
            return self.propose_wall(mesh, extent)
        ex, ey, _ = extent
        if self.rng.random() < ALIGNED_P:
            yaw = int(self.rng.integers(4)) * math.pi / 2 + float(self.rng.normal(0.0, 0.05))
        else:
            yaw = float(self.rng.uniform(-math.pi, math.pi))
        x, y = float(self.rng.uniform(0, self.W)), float(self.rng.uniform(0, self.D))
        return (x, y, 0.0, yaw) if self.fits(x, y, extent, yaw) else None

    def fits(self, x: float, y: float, extent: np.ndarray, yaw: float, margin: float = 0.02) -> bool:
        """Whether a footprint lies inside the room, `margin` from the walls."""
        corners = footprint_corners(x, y, extent[0] / 2, extent[1] / 2, yaw)
        return corners.min() >= margin and corners[:, 0].max() <= self.W - margin and \
            corners[:, 1].max() <= self.D - margin

    def place(self, candidates: list[Record], propose, count: int, gap: float = 0.03) -> list[Record]:
        return self.b.place_many(candidates, self.objects, propose, count, gap=gap, keep_out=tuple(self.keep_out),
                                 accept=lambda o: top(o) < self.H - 0.05)

    def furniture(self) -> None:
        named = {c for spec in ROOM_TYPES.values() for c, *_ in spec["furniture"]} | {"chair", "table", "desk"}
        entries = list(self.spec["furniture"])
        if self.type == "generic":
            extra = int(round(self.W * self.D / AREA_PER_OBJECT))
            entries = [(OTHER, lo + extra, hi + extra) for _, lo, hi in entries]
            named = set()  # any mesh of the libraries
        for category, lo, hi in entries:
            for obj in self.place(self.meshes(category, named), self.propose_floor, self.count((lo, hi))):
                if obj["category"] in ("table", "desk", "round_table"):
                    self.chairs_at(obj, self.count(self.spec["chairs"]))
        if named:
            self.place(self.meshes(OTHER, named), self.propose_floor, self.count(USER_EXTRAS))

    def chairs_at(self, table: Record, n: int) -> None:
        """Up to n chairs around a table or desk, facing it (a chair's back is its local +Y)."""
        chairs = self.b.library.meshes_for("indoor", "floor")
        chairs = [m for m in chairs if m["category"] == "chair"]
        against_wall = abs(table["location"][0] - self.W / 2) > self.W / 2 - table["extent"][1] or \
            abs(table["location"][1] - self.D / 2) > self.D / 2 - table["extent"][1]
        sides = [(0.0, -1.0)] if against_wall else [(0.0, -1.0), (0.0, 1.0), (-1.0, 0.0), (1.0, 0.0)]
        yaw = table["yaw"]
        c, s = math.cos(yaw), math.sin(yaw)
        for k in self.rng.permutation(len(sides))[:n]:
            lx, ly = sides[k]
            out = np.array([c * lx - s * ly, s * lx + c * ly])  # away from the table, in the room
            reach = (table["extent"][1] if ly else table["extent"][0]) / 2

            def propose(mesh, extent, out=out, reach=reach):
                p = np.array(table["location"][:2]) + out * (reach + extent[1] / 2 + float(self.rng.uniform(0.03, 0.15)))
                yaw = math.atan2(-out[0], out[1]) + float(self.rng.normal(0, 0.15))
                return (float(p[0]), float(p[1]), 0.0, yaw) if self.fits(p[0], p[1], extent, yaw) else None

            self.place(chairs, propose, 1, gap=0.01)

    def classroom_grid(self) -> None:
        if not self.spec["grid"]:
            return
        rows, cols = (self.count(r) for r in self.spec["grid"])
        tables = [m for m in self.meshes("table", set()) if m["category"] == "table"]
        for r in range(rows):
            for c in range(cols):
                x = self.W * (c + 1) / (cols + 1)
                y = 1.2 + (self.D - 2.4) * (r + 0.5) / rows
                # pupils face the wall at y = D: the table's long side across the room
                placed = self.place(tables, lambda mesh, extent, x=x, y=y: (x, y, 0.0, 0.0), 1)
                for table in placed:
                    self.chairs_at(dict(table, yaw=0.0), 1)

    def counters(self) -> None:
        """Kitchen counter runs along walls with a worktop, door seams and wall cabinets above."""
        for _ in range(self.count(self.spec["counters"])):
            for _ in range(10):
                i = int(self.rng.integers(4))
                wall = self.walls[i]
                L = min(wall.length - 0.2, float(self.rng.uniform(1.8, 4.5)))
                a0 = float(self.rng.uniform(0.1, wall.length - L - 0.1)) if wall.length - L > 0.2 else 0.1
                c, (sx, sy) = wall.rect(a0, a0 + L, 0.0, COUNTER_DEPTH)
                counter = self.b.box_object("counter", c[0], c[1], 0.0, (sx, sy, COUNTER_HEIGHT), supports=True)
                counter["extent"] = [counter["size"][0], counter["size"][1], COUNTER_HEIGHT + WORKTOP]
                fp = footprint(counter)
                if any(footprints_overlap(fp, footprint(o), 0.03) for o in self.objects) or \
                        any(footprints_overlap(fp, k) for k in self.keep_out):
                    continue
                self.objects.append(counter)
                self.wall_box(wall, a0, a0 + L, COUNTER_HEIGHT, COUNTER_HEIGHT + WORKTOP, 0.0, COUNTER_DEPTH + 0.03,
                              "worktop")
                seam = self.b.material("frame")
                for a in np.arange(a0 + 0.6, a0 + L - 0.3, 0.6):
                    self.wall_box(wall, a - 0.005, a + 0.005, 0.1, COUNTER_HEIGHT - 0.05, COUNTER_DEPTH,
                                  COUNTER_DEPTH + 0.005, "frame", seam)
                self._wall_cabinets(i, a0, a0 + L)
                break

    def _wall_cabinets(self, i: int, a0: float, a1: float) -> None:
        if any(o.wall == i and o.kind == "window" and o.a0 < a1 and a0 < o.a1 for o in self.openings):
            return
        z0 = float(self.rng.uniform(*WALL_CABINET_Z))
        h = min(float(self.rng.uniform(*WALL_CABINET_HEIGHT)), self.H - 0.05 - z0)
        c, (sx, sy) = self.walls[i].rect(a0, a1, 0.0, WALL_CABINET_DEPTH)
        self.objects.append(self.b.box_object("wall_cabinet", c[0], c[1], z0, (sx, sy, h)))

    # ------------------------------------------------------------------------------ decor, clutter

    def pictures(self) -> None:
        for _ in range(self.count(self.spec["pictures"])):
            i = int(self.rng.integers(4))
            wall = self.walls[i]
            w, h = float(self.rng.uniform(*PICTURE_WIDTH)), float(self.rng.uniform(*PICTURE_HEIGHT))
            if w + 0.4 > wall.length:
                continue
            a0 = float(self.rng.uniform(0.2, wall.length - 0.2 - w))
            z0 = min(float(self.rng.uniform(*PICTURE_CENTRE_Z)), self.H - 0.1 - h / 2) - h / 2
            zone = wall.zone(a0, a0 + w, 0.0, 0.05)
            if any(o.wall == i and a0 < o.a1 + 0.1 and o.a0 < a0 + w + 0.1 for o in self.openings) or \
                    any(footprints_overlap(zone, k) for k in self.keep_out) or \
                    any(top(o) > z0 and footprints_overlap(zone, footprint(o)) for o in self.objects):
                continue
            self.wall_box(wall, a0, a0 + w, z0, z0 + h, 0.0, 0.025, "picture")
            self.keep_out.append(zone)

    def rug(self) -> None:
        if self.rng.random() >= self.spec["rug_p"]:
            return
        sx, sy = (min(float(self.rng.uniform(*r)), side - 0.62) for r, side in zip(RUG_SIZE, (self.W, self.D)))
        if min(sx, sy) < 0.5:
            return
        x = float(self.rng.uniform(0.3 + sx / 2, self.W - 0.3 - sx / 2))
        y = float(self.rng.uniform(0.3 + sy / 2, self.D - 0.3 - sy / 2))
        self.structure.append(self.b.box("rug", (x, y, 0.0), (sx, sy, 0.008)))

    def clutter(self) -> None:
        """Small things on the tops of supporting furniture (each item records what it stands on)."""
        small = self.b.library.meshes_for("indoor", "surface")
        supports = [k for k, o in enumerate(self.objects) if o["supports"] and top(o) < self.H - 0.3]
        if not small or not supports:
            return
        on_top: dict[int, list[Record]] = {}
        for k in supports:
            sup = self.objects[k]
            ex, ey, _ = sup["extent"]
            sx, sy, _ = sup["location"]
            c, s = math.cos(sup["yaw"]), math.sin(sup["yaw"])

            def propose_top(mesh, extent, ex=ex, ey=ey, sx=sx, sy=sy, c=c, s=s, z=top(sup)):
                hx, hy = ex / 2 - max(extent[:2]) / 2 - 0.01, ey / 2 - max(extent[:2]) / 2 - 0.01
                if hx <= 0 or hy <= 0 or z + extent[2] > self.H - 0.05:
                    return None
                lx, ly = self.rng.uniform(-hx, hx), self.rng.uniform(-hy, hy)
                return sx + c * lx - s * ly, sy + s * lx + c * ly, z, float(self.rng.uniform(-math.pi, math.pi))

            items: list[Record] = []
            for _ in range(self.count(self.spec["clutter"])):
                obj = self.b.place(small, items, propose_top, tries=8, gap=0.01)
                if obj is not None:
                    obj["on"] = k  # index into objects; becomes the support's instance id (simgen.scene)
                    items.append(obj)
            on_top[k] = items
        for k in sorted(on_top):
            self.objects += on_top[k]

    # ------------------------------------------------------------------------------------- light

    def lights(self) -> tuple[list[Record], Record]:
        """Ceiling panels (a glowing box with an area light under it) and daylight through a window."""
        n = self.count(self.spec["lights"])
        exposure = 2.0 ** float(self.rng.uniform(*EXPOSURE_STOPS))
        long_x = self.W > self.D
        panel = LIGHT_PANELS[int(self.rng.integers(len(LIGHT_PANELS)))]
        glow = emissive(self.b.material("light"), self.rng.uniform(*PANEL_GLOW) * exposure)
        lights = []
        for k in range(n):
            f = (k + 0.5) / n + float(self.rng.normal(0, 0.03))
            x, y = (self.W * f, self.D / 2) if long_x else (self.W / 2, self.D * f)
            x, y = float(np.clip(x, 0.5, self.W - 0.5)), float(np.clip(y, 0.5, self.D - 0.5))
            px, py = panel if long_x else panel[::-1]
            self.structure.append(self.b.box("light", (x, y, self.H - 0.03), (px, py, 0.03), glow))
            kelvin = float(self.rng.uniform(*LAMP_KELVIN))
            lights.append({"type": "AREA", "location": [x, y, self.H - 0.06], "size": float(max(panel)),
                           "color": kelvin_to_rgb(kelvin), "kelvin": round(kelvin),
                           "energy": float(self.rng.uniform(60, 300) * self.W * self.D / 20 / n * exposure)})
        windows = [o for o in self.openings if o.kind == "window"]
        if not windows:
            return lights, {"color": [0.05, 0.05, 0.05], "strength": float(self.rng.uniform(0.5, 2.0) * exposure),
                            "hdri": None}
        normal = self.walls[windows[int(self.rng.integers(len(windows)))].wall].normal
        kelvin = float(self.rng.uniform(*DAYLIGHT_KELVIN))
        lights.append({"type": "SUN", "elevation_deg": float(self.rng.uniform(*SUN_ELEVATION_DEG)),
                       "azimuth_deg": math.degrees(math.atan2(-normal[0], normal[1])) + float(self.rng.uniform(-35, 35)),
                       "color": kelvin_to_rgb(kelvin), "kelvin": round(kelvin),
                       "energy": float(self.rng.uniform(*SUN_ENERGY) * exposure)})
        sky = np.array([0.6, 0.75, 1.0]) * float(self.rng.uniform(0.7, 1.0))
        return lights, {"color": [round(float(v), 4) for v in sky], "strength": float(self.rng.uniform(0.3, 1.0) * exposure),
                        "hdri": None}


def build_room(b: Builder, room_type: str) -> Record:
    """One room of a type: shell with doors and windows, counters, furniture, decor, clutter, lights."""
    room = RoomBuilder(b, room_type)
    room.shell()
    room.counters()
    room.classroom_grid()
    room.furniture()
    room.pictures()
    room.rug()
    room.clutter()
    lights, world = room.lights()
    return {"family": "indoor", "room_type": room_type, "room": [room.W, room.D, room.H],
            "openings": [dataclasses.asdict(o) for o in room.openings], "structure": room.structure, "objects": room.objects, "lights": lights, "world": world}
