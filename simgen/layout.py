"""Layout primitives shared by the scene builders: footprints, object records, collision-free placing.

Conventions: metres, Z up; a record's `location` is the centre of its bottom face; `extent` is its
bounding box (x, y, z) before yaw; objects standing against a wall have their back on local +Y.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from simgen.assets import Library
from simgen.materials import sample_material

Record = dict[str, Any]
Pose = tuple[float, float, float, float]  # x, y, z of the bottom centre, yaw


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


def footprint(obj: Record) -> np.ndarray:
    x, y, _ = obj["location"]
    ex, ey, _ = obj["extent"]
    return footprint_corners(x, y, ex / 2, ey / 2, obj["yaw"])


def top(obj: Record) -> float:
    """Height of an object's top above the floor."""
    return float(obj["location"][2] + obj["extent"][2])


def _rounded(values) -> list[float]:
    return [round(float(v), 4) for v in values]


@dataclass
class Builder:
    """What every record of one scene is drawn with: its generator, the libraries, the material style."""

    rng: np.random.Generator
    library: Library
    style: str = "plausible"

    def material(self, category: str) -> Record:
        return sample_material(self.rng, self.library, category, self.style)

    def box(self, category: str, centre, size, material: Record | None = None) -> Record:
        """A structure box (floor, wall, frame, rug ...): centre of its bottom face, full size."""
        return {"kind": "box", "category": category, "thing": False, "asset": None,
                "location": _rounded(centre), "size": _rounded(size), "yaw": 0.0,
                "material": material if material is not None else self.material(category)}

    def box_object(self, category: str, x: float, y: float, z: float, size, yaw: float = 0.0,
                   supports: bool = False, material: Record | None = None) -> Record:
        """A box that furniture and cameras must keep clear of (a kitchen counter, a wall cabinet)."""
        rec = self.box(category, (x, y, z), size, material)
        rec.update(yaw=round(float(yaw), 5), extent=rec["size"], supports=supports)
        return rec

    def mesh_object(self, mesh: Record, scale: float, extent: np.ndarray, pose: Pose) -> Record:
        x, y, z, yaw = pose
        return {
            "kind": "mesh", "asset": mesh["name"], "file": mesh["file"], "up": mesh.get("up", "z"),
            "category": mesh["category"], "thing": bool(mesh.get("thing", True)),
            "location": _rounded((x, y, z)), "yaw": round(float(yaw), 5), "scale": round(scale, 6),
            "extent": _rounded(extent), "supports": bool(mesh.get("supports", False)),
            "material": self.material(mesh["category"]),
        }

    def scaled_extent(self, mesh: Record) -> tuple[float, np.ndarray]:
        bbox = np.asarray(mesh["bbox"], float)
        if "size_m" in mesh:
            lo, hi = mesh["size_m"]
            scale = float(self.rng.uniform(lo, hi)) / float(bbox.max())
        else:
            jitter = float(mesh.get("scale_jitter", 0.0))
            scale = float(mesh["scale"]) * float(1 + self.rng.uniform(-jitter, jitter))
        return scale, bbox * scale

    def place(self, candidates: list[Record], placed: list[Record], propose: Callable[[Record, np.ndarray], Pose | None],
              tries: int = 25, gap: float = 0.03, keep_out: tuple[np.ndarray, ...] = ()) -> Record | None:
        """Try `propose(mesh, extent) -> pose | None` until the footprint is clear of `placed` (by
        `gap`) and of the `keep_out` footprints (door swings, window fronts)."""
        if not candidates:
            return None
        for _ in range(tries):
            mesh = candidates[int(self.rng.integers(len(candidates)))]
            scale, extent = self.scaled_extent(mesh)
            pose = propose(mesh, extent)
            if pose is None:
                continue
            obj = self.mesh_object(mesh, scale, extent, pose)
            fp = footprint(obj)
            if not any(footprints_overlap(fp, footprint(o), gap) for o in placed) and \
                    not any(footprints_overlap(fp, k) for k in keep_out):
                return obj
        return None

    def place_many(self, candidates: list[Record], placed: list[Record], propose, count: int, gap: float = 0.03,
                   accept: Callable[[Record], bool] = lambda obj: True,
                   keep_out: tuple[np.ndarray, ...] = ()) -> list[Record]:
        """Place up to `count` objects into `placed`; returns the new ones."""
        new = []
        for _ in range(count):
            obj = self.place(candidates, placed, propose, gap=gap, keep_out=keep_out)
            if obj is not None and accept(obj):
                placed.append(obj)
                new.append(obj)
        return new
