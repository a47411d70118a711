"""Asset libraries: the manifest format, loading, checking and drafting (docs/assets.md).

A library is a folder with `library.json`:

    {"format": "simgen-assets", "version": 1,
     "meshes":   [{"name", "file", "category", "thing", "placement", "family",
                   "size_m": [lo, hi]  or  "scale": s, "scale_jitter", "up": "z"|"y", "bbox", "supports"}],
     "textures": [{"name", "file"} or {"name", "dir"} (PBR folder), "tile_m"],
     "hdris":    [{"name", "file"}]}

Needs no `bpy`. Reading mesh files (for `check`, `draft` and a missing `bbox`) uses trimesh,
which comes with the render extra.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simgen.runs import sha256_file

ASSETS_FORMAT = "simgen-assets"
LIBRARY_FILE = "library.json"
BUILTIN_DIR = Path(__file__).resolve().parents[1] / "assets"

MESH_SUFFIXES = (".obj", ".ply", ".stl", ".glb", ".gltf", ".fbx", ".blend")
TRIMESH_SUFFIXES = (".obj", ".ply", ".stl", ".glb", ".gltf")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr", ".hdr")
HDRI_SUFFIXES = (".hdr", ".exr")
PLACEMENTS = {
    "indoor": ("floor", "wall", "surface"),
    "outdoor": ("road", "roadside", "ground"),
}
ALL_PLACEMENTS = tuple(p for ps in PLACEMENTS.values() for p in ps)
# PBR texture folders: which file name fragments mean which map.
PBR_MAPS = {"color": ("color", "albedo", "diffuse", "basecolor", "base_color", "col"),
            "roughness": ("roughness", "rough"), "normal": ("normal", "nrm", "nor"),
            "metallic": ("metallic", "metalness", "metal")}
MAX_PLAUSIBLE_M = {"indoor": 4.0, "outdoor": 40.0}
MIN_PLAUSIBLE_M = 0.02


class AssetError(Exception):
    """A library that cannot be used; the message lists its problems."""


@dataclass
class Problem:
    file: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message} -> {self.fix}"


@dataclass
class Library:
    """Meshes, textures and HDRIs merged from one or more library folders (paths made absolute)."""

    meshes: list[dict[str, Any]] = field(default_factory=list)
    textures: list[dict[str, Any]] = field(default_factory=list)
    hdris: list[dict[str, Any]] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)  # one per folder: identifies the content

    def meshes_for(self, family: str, placement: str) -> list[dict[str, Any]]:
        return [m for m in self.meshes if m["placement"] == placement and family in m["family"]]


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / LIBRARY_FILE
    if not folder.is_dir():
        raise AssetError(f"{folder}: asset folder does not exist")
    if not path.exists():
        raise AssetError(f"{path}: no library manifest; draft one with `simgen assets draft {folder}`")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise AssetError(f"{path}: invalid JSON ({e})") from None
    if not isinstance(data, dict) or data.get("format") != ASSETS_FORMAT:
        raise AssetError(f'{path}: not an asset manifest (needs "format": "{ASSETS_FORMAT}")')
    return data


def mesh_extent(path: Path, up: str = "z") -> list[float]:
    """Bounding-box extent (x, y, z) of a mesh file in its own units, Z up."""
    try:
        import trimesh
    except ImportError:
        raise AssetError(f"{path}: reading meshes needs trimesh (pip install -e '.[render]') or a 'bbox' entry") from None
    if path.suffix.lower() not in TRIMESH_SUFFIXES:
        raise AssetError(f"{path}: cannot measure {path.suffix} files outside Blender; give its 'bbox' [x, y, z]")
    try:
        if path.suffix.lower() == ".obj":
            # OBJ is text, often with comments in another encoding (Latin-1) that trimesh would need
            # chardet to guess; the geometry is ASCII, so decoding leniently loses nothing
            text = path.read_bytes().decode("utf-8", errors="replace").encode()
            scene = trimesh.load(io.BytesIO(text), file_type="obj", force="scene")
        else:
            scene = trimesh.load(str(path), force="scene")
        lo, hi = scene.bounds
    except Exception as e:  # trimesh raises many kinds on bad files
        raise AssetError(f"{path}: unreadable mesh ({type(e).__name__}: {e})") from None
    ext = [float(v) for v in (hi - lo)]
    # glTF is Y up by specification; so is `up: "y"`. Blender's importers turn Y up into Z up.
    if up == "y" or path.suffix.lower() in (".glb", ".gltf"):
        ext = [ext[0], ext[2], ext[1]]
    return ext


def _mesh_problems(folder: Path, i: int, m: Any, measure: bool) -> list[Problem]:
    where = f"{folder / LIBRARY_FILE} meshes[{i}]"
    if not isinstance(m, dict):
        return [Problem(where, "entry is not an object", "write {\"name\": ..., \"file\": ...}")]
    probs = []
    where = f"{where} ({m.get('name', '?')})"
    for key in ("name", "file", "category", "placement", "family"):
        if key not in m:
            probs.append(Problem(where, f"missing '{key}'", f"add \"{key}\" (see docs/assets.md)"))
    if probs:
        return probs
    if not isinstance(m["file"], str) or not _inside(folder, m["file"]):
        return [Problem(where, f"file {m['file']!r} lies outside the library folder", OUTSIDE_FIX)]
    path = folder / m["file"]
    families = [m["family"]] if isinstance(m["family"], str) else m["family"]
    if not set(families) <= set(PLACEMENTS):
        probs.append(Problem(where, f"unknown family {m['family']!r}", "use \"indoor\", \"outdoor\" or a list of both"))
    if m["placement"] not in ALL_PLACEMENTS:
        probs.append(Problem(where, f"unknown placement {m['placement']!r}",
                             f"use one of {', '.join(ALL_PLACEMENTS)}"))
    elif not any(m["placement"] in PLACEMENTS.get(f, ()) for f in families):
        probs.append(Problem(where, f"placement {m['placement']!r} does not exist in family {m['family']!r}",
                             "indoor: floor, wall, surface; outdoor: road, roadside, ground"))
    if m.get("up", "z") not in ("y", "z"):
        probs.append(Problem(where, f"unknown up axis {m['up']!r}", "use \"z\" or \"y\""))
    if "scale" in m and not (_is_number(m["scale"]) and m["scale"] > 0):
        return probs + [Problem(where, f"bad scale {m['scale']!r}", "give a positive number: file units to metres")]
    if "size_m" not in m and "scale" not in m:
        probs.append(Problem(where, "neither 'size_m' nor 'scale'",
                             "add \"size_m\": [lo, hi] (longest side in metres) or \"scale\" (file units to metres)"))
    if not path.exists():
        return probs + [Problem(str(path), "mesh file missing", "fix 'file' or add the file")]
    if path.suffix.lower() not in MESH_SUFFIXES:
        return probs + [Problem(str(path), f"unsupported mesh type {path.suffix}", f"convert to one of {' '.join(MESH_SUFFIXES)}")]
    bbox = m.get("bbox")
    if bbox is None and measure:
        try:
            bbox = mesh_extent(path, m.get("up", "z"))
        except AssetError as e:
            return probs + [Problem(str(path), str(e).split(": ", 1)[1], "re-export the mesh or give 'bbox'")]
    elif measure and path.suffix.lower() in TRIMESH_SUFFIXES:
        try:
            mesh_extent(path, m.get("up", "z"))
        except AssetError as e:
            return probs + [Problem(str(path), str(e).split(": ", 1)[1], "re-export the mesh")]
    return probs + _size_problems(where, m, bbox, families)


def _size_problems(where: str, m: dict[str, Any], bbox: Any, families: list[str]) -> list[Problem]:
    """A mesh entry's extent, scale and size_m: well formed, and a plausible real size."""
    probs = []
    if bbox is not None:
        if not isinstance(bbox, list) or len(bbox) != 3 or not all(map(_is_number, bbox)) or min(bbox) < 0 \
                or max(bbox) <= 0:
            return [Problem(where, f"bad bbox {bbox!r}", "give the mesh extent [x, y, z] in file units")]
        if "scale" in m and "size_m" not in m:
            longest = max(bbox) * float(m["scale"])
            limit = max(MAX_PLAUSIBLE_M[f] for f in families if f in MAX_PLAUSIBLE_M) if families else 40.0
            if not MIN_PLAUSIBLE_M <= longest <= limit:
                probs.append(Problem(where, f"implausible size: longest side {longest:.3g} m with scale {m['scale']}",
                                     f"set 'scale' so the longest side is its real size, within {MIN_PLAUSIBLE_M:g}-"
                                     f"{limit:g} m (scale {1.0 / max(bbox):.3g} makes it 1 m), or use 'size_m'"))
    if "size_m" in m:
        s = m["size_m"]
        if not (isinstance(s, list) and len(s) == 2 and all(map(_is_number, s)) and 0 < s[0] <= s[1] <= 100):
            probs.append(Problem(where, f"bad size_m {s!r}", "give [lo, hi]: the longest side in metres, "
                                 "0 < lo <= hi <= 100"))
    return probs


OUTSIDE_FIX = "give a path relative to the folder that holds library.json, inside it (no '..', not absolute)"


def _inside(folder: Path, relative: str) -> bool:
    """Whether a manifest's path names a file inside the library folder (not absolute, no way out)."""
    return not Path(relative).is_absolute() and (folder / relative).resolve().is_relative_to(folder.resolve())


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_library(folder: str | Path, measure: bool = True) -> list[Problem]:
    """Every problem of one library folder (empty list: usable)."""
    folder = Path(folder)
    try:
        data = _read_manifest(folder)
    except AssetError as e:
        return [Problem(str(folder / LIBRARY_FILE), str(e).split(": ", 1)[-1], "see docs/assets.md")]
    probs: list[Problem] = []
    for kind in ("meshes", "textures", "hdris"):
        if not isinstance(data.get(kind, []), list):
            probs.append(Problem(f"{folder / LIBRARY_FILE} {kind}", f"must be a list of entries, got {data[kind]!r}",
                                 "see docs/assets.md"))
            data[kind] = []
    for i, m in enumerate(data.get("meshes", [])):
        probs += _mesh_problems(folder, i, m, measure)
    for kind in ("textures", "hdris"):
        for i, t in enumerate(data.get(kind, [])):
            where = f"{folder / LIBRARY_FILE} {kind}[{i}]"
            target = t.get("file") or t.get("dir") if isinstance(t, dict) else None
            if not target or not isinstance(target, str):
                probs.append(Problem(where, "needs 'file' (or 'dir' for a PBR folder)", "see docs/assets.md"))
                continue
            path = folder / target
            if not _inside(folder, target):
                probs.append(Problem(where, f"{target!r} lies outside the library folder", OUTSIDE_FIX))
            elif not path.exists():
                probs.append(Problem(str(path), f"{kind[:-1]} missing", "fix the path or add the file"))
            elif path.is_dir() and not _pbr_maps(path).get("color"):
                probs.append(Problem(str(path), "PBR folder without a colour map",
                                     "name one image *color*, *albedo*, *diffuse* or *basecolor*"))
            elif path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES:
                probs.append(Problem(str(path), f"unsupported image type {path.suffix}", "use png, jpg, exr or hdr"))
            elif path.is_file() and kind == "textures" and path.suffix.lower() in (".png", ".jpg", ".jpeg"):
                try:
                    from PIL import Image
                    with Image.open(path) as im:
                        im.verify()
                except Exception as e:
                    probs.append(Problem(str(path), f"unreadable image ({e})", "re-save the image"))
    if not data.get("meshes") and not data.get("textures") and not data.get("hdris"):
        probs.append(Problem(str(folder / LIBRARY_FILE), "library is empty", "list meshes, textures or hdris"))
    return probs


def _pbr_maps(folder: Path) -> dict[str, str]:
    maps: dict[str, str] = {}
    for f in sorted(folder.iterdir()):
        if f.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        stem = f.stem.lower()
        for kind, words in PBR_MAPS.items():
            if kind not in maps and any(w in stem.replace("-", "_").split("_") or stem.endswith(w) for w in words):
                maps[kind] = str(f)
    return maps


DIGEST_CACHE = ".simgen-digests.json"  # beside library.json: size, time and sha256 of each file read


def _referenced_files(folder: Path, data: dict[str, Any]) -> list[Path]:
    files = [folder / m["file"] for m in data.get("meshes", [])] + [folder / h["file"] for h in data.get("hdris", [])]
    for t in data.get("textures", []):
        files += sorted(p for p in (folder / t["dir"]).iterdir() if p.is_file()) if "dir" in t else [folder / t["file"]]
    return files


def content_digest(folder: Path, data: dict[str, Any]) -> str:
    """One hash over library.json and every file it references, so that an edited mesh or texture
    is a different library. Each file is hashed once and then recognised by its size and
    modification time (cached in DIGEST_CACHE beside library.json when the folder is writable)."""
    cache_path = folder / DIGEST_CACHE
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    total, fresh = hashlib.sha256((folder / LIBRARY_FILE).read_bytes()), {}
    for path in _referenced_files(folder, data):
        rel, st = str(path.relative_to(folder)), path.stat()
        entry = cache.get(rel)
        if not entry or entry["size"] != st.st_size or entry["mtime_ns"] != st.st_mtime_ns:
            entry = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(path)}
        fresh[rel] = entry
        total.update(f"{rel}:{entry['sha256']}".encode())
    if fresh != cache:
        tmp = cache_path.with_name(f"{DIGEST_CACHE}.tmp-{os.getpid()}")
        try:
            tmp.write_text(json.dumps(fresh, indent=0, sort_keys=True))
            os.replace(tmp, cache_path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a read-only library is hashed again next time
    return total.hexdigest()[:16]


def same_libraries(recorded: list[str], current: list[str]) -> bool:
    """Whether a dataset's recorded library digests match the current ones. Digests of earlier
    releases (FOLDER:CRC of library.json only) match on that part."""
    return len(recorded) == len(current) and all(c == r or c.startswith(r + ":") for r, c in zip(recorded, current))


def load_libraries(folders: list[str | Path], check: bool = True) -> Library:
    """Merge library folders in order; refuse (AssetError listing every problem) a broken one.

    `check=False` skips reading every mesh file: for render workers, whose job was checked once
    when it started."""
    lib = Library()
    for folder in folders:
        folder = Path(folder).resolve()
        problems = check_library(folder, measure=check)
        if problems:
            lines = "\n  ".join(str(p) for p in problems)
            raise AssetError(f"asset library {folder} has {len(problems)} problem(s):\n  {lines}\n"
                             f"(run `simgen assets check {folder}`)")
        data = _read_manifest(folder)
        if check:  # the job's digest; render workers (check=False) do not need it
            lib.digests.append(f"{folder.name}:{zlib.crc32((folder / LIBRARY_FILE).read_bytes()):08x}:"
                               f"{content_digest(folder, data)}")
        for m in data.get("meshes", []):
            m = dict(m, file=str(folder / m["file"]))
            m["family"] = [m["family"]] if isinstance(m["family"], str) else list(m["family"])
            m.setdefault("up", "z")
            m.setdefault("thing", True)
            m.setdefault("supports", False)
            m.setdefault("scale_jitter", 0.0)
            if m.get("bbox") is None:
                m["bbox"] = mesh_extent(Path(m["file"]), m["up"])
            lib.meshes.append(m)
        for t in data.get("textures", []):
            if "dir" in t:
                lib.textures.append(dict(t, maps=_pbr_maps(folder / t["dir"])))
            else:
                lib.textures.append(dict(t, maps={"color": str(folder / t["file"])}))
        lib.hdris += [dict(h, file=str(folder / h["file"])) for h in data.get("hdris", [])]
    return lib


def draft_manifest(folder: str | Path, family: str = "indoor") -> dict[str, Any]:
    """A starting manifest for a folder of meshes, textures and HDRIs (e.g. a ShapeNet-style tree,
    a CC0 texture pack, an HDRI folder). Category comes from the parent folder's name; sizes,
    placement and thing/stuff are guesses the user should review."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AssetError(f"{folder}: not a folder")
    meshes, textures, hdris, pbr_dirs = [], [], [], set()
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        suffix = path.suffix.lower()
        if path.is_dir() or path.name == LIBRARY_FILE:
            continue
        if suffix in MESH_SUFFIXES:
            # ShapeNet: <synset>/<model>/models/model_normalized.obj -> category = synset folder
            parts = path.relative_to(folder).parts
            category = parts[0] if len(parts) > 1 else path.stem
            entry = {"name": rel.rsplit(".", 1)[0].replace("/", "_"), "file": rel, "category": category,
                     "thing": True, "placement": PLACEMENTS[family][0], "family": family,
                     "size_m": [0.3, 1.5] if family == "indoor" else [1.0, 5.0],
                     "up": "y" if suffix in (".obj", ".glb", ".gltf", ".fbx") else "z"}
            if suffix in TRIMESH_SUFFIXES:
                try:
                    entry["bbox"] = [round(v, 5) for v in mesh_extent(path, entry["up"])]
                except AssetError:
                    pass  # `check` will report it
            meshes.append(entry)
        elif suffix in HDRI_SUFFIXES:
            hdris.append({"name": path.stem, "file": rel})
        elif suffix in IMAGE_SUFFIXES:
            siblings = [p for p in path.parent.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
            if len(siblings) > 1 and _pbr_maps(path.parent).get("color"):
                pbr_dirs.add(path.parent)
            else:
                textures.append({"name": path.stem, "file": rel, "tile_m": 1.0})
    for d in sorted(pbr_dirs):
        rel = d.relative_to(folder).as_posix()
        textures.append({"name": rel.replace("/", "_") or folder.name, "dir": rel or ".", "tile_m": 1.0})
    return {"format": ASSETS_FORMAT, "version": 1,
            "description": f"drafted by `simgen assets draft` from {folder}; review sizes and placements",
            "meshes": meshes, "textures": textures, "hdris": hdris}
