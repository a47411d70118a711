#!/usr/bin/env python
"""Make the built-in asset library in `assets/` (committed; rerun to regenerate it).

Every mesh and texture is built procedurally here from boxes, cylinders, cones and spheres and
from numpy noise, so the library is free to redistribute and small (a few MB). Meshes are
Wavefront OBJ, Z up, metres, origin at the centre of the bottom face. The manifest
`assets/library.json` follows docs/assets.md.

    python scripts/make_assets.py [--out assets]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from asset_textures import TEXTURES, TILE_M, texture  # scripts/asset_textures.py, beside this file

# ------------------------------------------------------------------------ mesh building blocks


class Mesh:
    def __init__(self) -> None:
        self.v: list[np.ndarray] = []
        self.f: list[np.ndarray] = []
        self.n = 0

    def add(self, verts: np.ndarray, faces: np.ndarray) -> "Mesh":
        self.v.append(np.asarray(verts, float))
        self.f.append(np.asarray(faces, int) + self.n)
        self.n += len(verts)
        return self

    def box(self, cx, cy, z0, sx, sy, sz) -> "Mesh":
        x = np.array([-1, 1]) * sx / 2 + cx
        y = np.array([-1, 1]) * sy / 2 + cy
        z = np.array([z0, z0 + sz])
        v = np.array([[x[i], y[j], z[k]] for k in (0, 1) for j in (0, 1) for i in (0, 1)])
        f = [[0, 2, 3, 1], [4, 5, 7, 6], [0, 1, 5, 4], [2, 6, 7, 3], [0, 4, 6, 2], [1, 3, 7, 5]]
        return self.add(v, f)

    def cylinder(self, cx, cy, z0, r0, h, r1=None, seg=16) -> "Mesh":
        """A closed frustum (cone when r1 is 0) from z0 to z0 + h."""
        r1 = r0 if r1 is None else r1
        a = np.linspace(0, 2 * np.pi, seg, endpoint=False)
        bottom = np.stack([cx + r0 * np.cos(a), cy + r0 * np.sin(a), np.full(seg, z0)], 1)
        top = np.stack([cx + r1 * np.cos(a), cy + r1 * np.sin(a), np.full(seg, z0 + h)], 1)
        v = np.concatenate([bottom, top, [[cx, cy, z0], [cx, cy, z0 + h]]])
        f = []
        for i in range(seg):
            j = (i + 1) % seg
            f += [[i, j, seg + j, seg + i], [2 * seg, j, i], [2 * seg + 1, seg + i, seg + j]]
        # mixed quads/triangles: write faces as lists
        self.v.append(v)
        self.f.append([np.asarray(x) + self.n for x in f])
        self.n += len(v)
        return self

    def sphere(self, cx, cy, cz, r, seg=12, rings=8, squash=1.0) -> "Mesh":
        verts, faces = [[cx, cy, cz - r * squash]], []
        for k in range(1, rings):
            t = np.pi * k / rings
            for i in range(seg):
                a = 2 * np.pi * i / seg
                verts.append([cx + r * np.sin(t) * np.cos(a), cy + r * np.sin(t) * np.sin(a), cz - r * squash * np.cos(t)])
        verts.append([cx, cy, cz + r * squash])
        top = len(verts) - 1
        ring = lambda k, i: 1 + (k - 1) * seg + (i % seg)  # noqa: E731
        for i in range(seg):
            faces.append([0, ring(1, i + 1), ring(1, i)])
            faces.append([top, ring(rings - 1, i), ring(rings - 1, i + 1)])
            for k in range(1, rings - 1):
                faces.append([ring(k, i), ring(k, i + 1), ring(k + 1, i + 1), ring(k + 1, i)])
        self.v.append(np.asarray(verts, float))
        self.f.append([np.asarray(x) + self.n for x in faces])
        self.n += len(verts)
        return self

    def write_obj(self, path: Path) -> list[float]:
        """Write OBJ; return the bounding-box extent (x, y, z) in metres."""
        verts = np.concatenate(self.v)
        lines = ["# made by scripts/make_assets.py; Z up, metres\n"]
        lines += [f"v {x:.4f} {y:.4f} {z:.4f}\n" for x, y, z in verts]
        for group in self.f:
            for face in group:
                lines.append("f " + " ".join(str(int(i) + 1) for i in face) + "\n")
        path.write_text("".join(lines))
        ext = verts.max(0) - verts.min(0)
        return [round(float(e), 4) for e in ext]


# ------------------------------------------------------------------------------- mesh recipes
# Each recipe builds one object from a parameter vector drawn from `rng`, so several variants of
# a category differ in proportions.


def chair(rng):
    m, w, d, seat = Mesh(), rng.uniform(0.4, 0.55), rng.uniform(0.4, 0.55), rng.uniform(0.42, 0.48)
    leg = 0.04
    for sx in (-1, 1):
        for sy in (-1, 1):
            m.box(sx * (w / 2 - leg), sy * (d / 2 - leg), 0, leg, leg, seat)
    m.box(0, 0, seat, w, d, 0.05)
    m.box(0, d / 2 - 0.03, seat + 0.05, w, 0.05, rng.uniform(0.35, 0.5))
    return m


def table(rng, desk=False):
    m = Mesh()
    w, d, h = rng.uniform(0.9, 1.8), rng.uniform(0.6, 1.0), rng.uniform(0.7, 0.78)
    leg = 0.06
    for sx in (-1, 1):
        for sy in (-1, 1):
            m.box(sx * (w / 2 - leg), sy * (d / 2 - leg), 0, leg, leg, h - 0.04)
    m.box(0, 0, h - 0.04, w, d, 0.04)
    if desk:
        m.box(w / 2 - 0.25, 0, 0, 0.45, d - 0.1, h - 0.04)
    return m


def round_table(rng):
    m, r, h = Mesh(), rng.uniform(0.35, 0.6), rng.uniform(0.7, 0.76)
    m.cylinder(0, 0, 0, 0.25, 0.03).cylinder(0, 0, 0, 0.04, h - 0.03).cylinder(0, 0, h - 0.03, r, 0.03, seg=24)
    return m


def sofa(rng):
    m, w, d = Mesh(), rng.uniform(1.6, 2.4), rng.uniform(0.8, 1.0)
    m.box(0, 0, 0.05, w, d, 0.35).box(0, d / 2 - 0.1, 0.4, w, 0.2, 0.45)
    m.box(-w / 2 + 0.1, 0, 0.4, 0.2, d, 0.22).box(w / 2 - 0.1, 0, 0.4, 0.2, d, 0.22)
    m.box(0, -0.05, 0.4, w - 0.4, d - 0.3, 0.12)
    return m


def bed(rng):
    m, w, l = Mesh(), rng.uniform(1.0, 1.8), rng.uniform(1.9, 2.1)
    m.box(0, 0, 0, w, l, 0.3).box(0, 0, 0.3, w - 0.05, l - 0.05, 0.22)
    m.box(0, l / 2 - 0.04, 0, w, 0.08, rng.uniform(0.9, 1.2)).box(0, l / 2 - 0.35, 0.52, w * 0.7, 0.35, 0.12)
    return m


def shelf(rng):
    m, w, d, h = Mesh(), rng.uniform(0.6, 1.2), rng.uniform(0.3, 0.4), rng.uniform(1.2, 2.0)
    m.box(-w / 2 + 0.02, 0, 0, 0.04, d, h).box(w / 2 - 0.02, 0, 0, 0.04, d, h).box(0, d / 2 - 0.01, 0, w, 0.02, h)
    for z in np.linspace(0.05, h - 0.03, int(rng.integers(3, 6))):
        m.box(0, 0, z, w, d, 0.03)
    return m


def cabinet(rng):
    m, w, d, h = Mesh(), rng.uniform(0.5, 1.4), rng.uniform(0.4, 0.6), rng.uniform(0.6, 1.1)
    m.box(0, 0, 0.08, w, d, h - 0.08).box(0, 0, 0, w - 0.06, d - 0.06, 0.08)
    for x in np.linspace(-w / 4, w / 4, 2):
        m.box(x, -d / 2 - 0.01, h * 0.7, 0.12, 0.02, 0.02)
    return m


def lamp(rng):
    m, h = Mesh(), rng.uniform(1.3, 1.8)
    m.cylinder(0, 0, 0, 0.15, 0.03).cylinder(0, 0, 0.03, 0.015, h - 0.3).cylinder(0, 0, h - 0.3, 0.22, 0.3, r1=0.12)
    return m


def plant(rng):
    m, h = Mesh(), rng.uniform(0.5, 1.3)
    m.cylinder(0, 0, 0, 0.14, 0.3, r1=0.18).sphere(0, 0, 0.3 + h / 2, h / 2.2, squash=1.0)
    return m


def box_obj(rng):
    s = rng.uniform(0.15, 0.5, size=3)
    return Mesh().box(0, 0, 0, *s)


def mug(rng):
    return Mesh().cylinder(0, 0, 0, 0.045, 0.1, seg=16).box(0.06, 0, 0.03, 0.03, 0.012, 0.05)


def bottle(rng):
    h = rng.uniform(0.2, 0.32)
    return Mesh().cylinder(0, 0, 0, 0.035, h * 0.65).cylinder(0, 0, h * 0.65, 0.035, h * 0.2, r1=0.013).cylinder(0, 0, h * 0.85, 0.013, h * 0.15)


def book_stack(rng):
    m, z = Mesh(), 0.0
    for _ in range(int(rng.integers(1, 5))):
        t = rng.uniform(0.02, 0.05)
        m.box(rng.uniform(-0.02, 0.02), rng.uniform(-0.02, 0.02), z, rng.uniform(0.15, 0.24), rng.uniform(0.2, 0.3), t)
        z += t
    return m


def vase(rng):
    h = rng.uniform(0.2, 0.45)
    return Mesh().cylinder(0, 0, 0, 0.06, h * 0.5, r1=0.1).cylinder(0, 0, h * 0.5, 0.1, h * 0.5, r1=0.04)


def bowl(rng):
    return Mesh().cylinder(0, 0, 0, 0.05, 0.07, r1=rng.uniform(0.09, 0.14), seg=20)


def monitor(rng):
    w = rng.uniform(0.45, 0.7)
    return Mesh().box(0, 0, 0, 0.2, 0.15, 0.02).box(0, 0, 0.02, 0.04, 0.04, 0.12).box(0, 0, 0.14, w, 0.03, w * 0.6)


def car(rng, van=False):
    m = Mesh()
    l, w = rng.uniform(3.8, 4.8), rng.uniform(1.7, 1.9)
    body_h = rng.uniform(0.6, 0.8)
    m.box(0, 0, 0.3, l, w, body_h)
    cab_l = l * (0.85 if van else rng.uniform(0.45, 0.6))
    m.box(-0.1 if not van else 0.05, 0, 0.3 + body_h, cab_l, w * 0.92, rng.uniform(0.5, 0.65) + (0.5 if van else 0))
    for sx in (-1, 1):
        for sy in (-1, 1):
            # wheels: short cylinders lying along y, approximated by boxes for simplicity of normals
            m.box(sx * l * 0.32, sy * (w / 2 - 0.1), 0, 0.62, 0.22, 0.62)
    return m


def truck(rng):
    m, l = Mesh(), rng.uniform(6.5, 9)
    m.box(l / 2 - 1.0, 0, 0.4, 2.0, 2.4, 2.4).box(-0.9, 0, 0.9, l - 2.2, 2.5, rng.uniform(2.4, 3.0))
    for x in (l / 2 - 1.0, -l / 4, -l / 2 + 1.0):
        for sy in (-1, 1):
            m.box(x, sy * 1.0, 0, 0.95, 0.35, 0.95)
    return m


def pole(rng):
    h = rng.uniform(2.5, 4)
    m = Mesh().cylinder(0, 0, 0, 0.06, h, seg=10)
    if rng.random() < 0.5:
        m.box(0, 0, h - 0.6, 0.6, 0.04, 0.6)  # a sign
    return m


def streetlight(rng):
    h = rng.uniform(6, 9)
    return Mesh().cylinder(0, 0, 0, 0.12, h, r1=0.08, seg=10).box(0.6, 0, h - 0.1, 1.3, 0.15, 0.1).box(1.2, 0, h - 0.25, 0.5, 0.25, 0.15)


def tree(rng):
    h = rng.uniform(4, 10)
    m = Mesh().cylinder(0, 0, 0, h * 0.03, h * 0.45, r1=h * 0.02, seg=10)
    if rng.random() < 0.5:
        m.sphere(0, 0, h * 0.7, h * 0.3, seg=14, rings=10)
    else:
        m.cylinder(0, 0, h * 0.3, h * 0.22, h * 0.7, r1=0.0, seg=14)
    return m


def bush(rng):
    return Mesh().sphere(0, 0, 0.5, rng.uniform(0.5, 1.0), seg=12, rings=8, squash=0.7)


def hydrant(rng):
    return Mesh().cylinder(0, 0, 0, 0.14, 0.05).cylinder(0, 0, 0.05, 0.1, 0.6).sphere(0, 0, 0.65, 0.1).box(0, 0, 0.4, 0.38, 0.08, 0.08)


def bench(rng):
    m, w = Mesh(), rng.uniform(1.4, 2.0)
    m.box(0, 0, 0.42, w, 0.45, 0.05).box(0, 0.2, 0.5, w, 0.05, 0.4)
    for sx in (-1, 1):
        m.box(sx * (w / 2 - 0.1), 0, 0, 0.06, 0.45, 0.42)
    return m


def trash_bin(rng):
    return Mesh().cylinder(0, 0, 0, 0.25, rng.uniform(0.8, 1.1), r1=0.3, seg=16)


# category: (recipe, variants, placement, family, thing, size range of the longest side in m, supports)
RECIPES = {
    "chair": (chair, 3, "floor", "indoor", True, None, False),
    "table": (table, 3, "floor", "indoor", True, None, True),
    "desk": (lambda r: table(r, desk=True), 2, "wall", "indoor", True, None, True),
    "round_table": (round_table, 2, "floor", "indoor", True, None, True),
    "sofa": (sofa, 2, "wall", "indoor", True, None, False),
    "bed": (bed, 2, "wall", "indoor", True, None, False),
    "shelf": (shelf, 3, "wall", "indoor", True, None, True),
    "cabinet": (cabinet, 3, "wall", "indoor", True, None, True),
    "lamp": (lamp, 2, "floor", "indoor", True, None, False),
    "plant": (plant, 2, "floor", "indoor", True, None, False),
    "box": (box_obj, 3, "floor", "indoor", True, None, True),
    "mug": (mug, 1, "surface", "indoor", True, None, False),
    "bottle": (bottle, 2, "surface", "indoor", True, None, False),
    "books": (book_stack, 3, "surface", "indoor", True, None, False),
    "vase": (vase, 2, "surface", "indoor", True, None, False),
    "bowl": (bowl, 2, "surface", "indoor", True, None, False),
    "monitor": (monitor, 2, "surface", "indoor", True, None, False),
    "car": (car, 4, "road", "outdoor", True, None, False),
    "van": (lambda r: car(r, van=True), 2, "road", "outdoor", True, None, False),
    "truck": (truck, 2, "road", "outdoor", True, None, False),
    "pole": (pole, 2, "roadside", "outdoor", True, None, False),
    "streetlight": (streetlight, 2, "roadside", "outdoor", True, None, False),
    "tree": (tree, 4, "roadside", "outdoor", True, None, False),
    "bush": (bush, 2, "ground", "outdoor", True, None, False),
    "hydrant": (hydrant, 1, "roadside", "outdoor", True, None, False),
    "bench": (bench, 2, "roadside", "outdoor", True, None, False),
    "trash_bin": (trash_bin, 1, "roadside", "outdoor", True, None, False),
}

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "assets"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    (out / "meshes").mkdir(parents=True, exist_ok=True)
    (out / "textures").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    meshes = []
    for category, (recipe, variants, placement, family, thing, size, supports) in RECIPES.items():
        for v in range(variants):
            name = f"{category}_{v:02d}"
            extent = recipe(rng).write_obj(out / "meshes" / f"{name}.obj")
            meshes.append({
                "name": name, "file": f"meshes/{name}.obj", "category": category, "thing": thing,
                "placement": placement, "family": family, "scale": 1.0, "scale_jitter": 0.1,
                "up": "z", "bbox": extent, "supports": supports,
            })
    textures = []
    counts: dict[str, int] = {}
    for kind in TEXTURES:
        i = counts[kind] = counts.get(kind, -1) + 1
        name = f"{kind}_{i:02d}"
        Image.fromarray(texture(kind, rng)).save(out / "textures" / f"{name}.png", optimize=True)
        textures.append({"name": name, "file": f"textures/{name}.png", "kind": kind, "tile_m": TILE_M.get(kind, 1.0)})
    manifest = {
        "format": "simgen-assets", "version": 1,
        "description": "Built-in library: procedurally made by scripts/make_assets.py; free to redistribute (CC0).",
        "meshes": meshes, "textures": textures, "hdris": [],
    }
    (out / "library.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {len(meshes)} meshes and {len(textures)} textures to {out}")


if __name__ == "__main__":
    main()
