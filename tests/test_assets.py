import json

import pytest

from simgen.assets import BUILTIN_DIR, AssetError, check_library, draft_manifest, load_libraries

CUBE_OBJ = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 0 0 1\nv 1 0 1\nv 1 1 1\nv 0 1 1\nf 1 2 3 4\nf 5 6 7 8\nf 1 2 6 5\n"


def write_library(folder, meshes, textures=()):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "library.json").write_text(json.dumps(
        {"format": "simgen-assets", "version": 1, "meshes": meshes, "textures": list(textures), "hdris": []}))
    return folder


def test_builtin_library_is_clean_and_covers_every_placement():
    assert check_library(BUILTIN_DIR) == []
    lib = load_libraries([BUILTIN_DIR])
    for family, placements in {"indoor": ["floor", "wall", "surface"], "outdoor": ["road", "roadside", "ground"]}.items():
        for p in placements:
            assert lib.meshes_for(family, p), (family, p)
    assert len(lib.textures) >= 8


def test_check_lists_every_problem_with_a_fix(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "cube.obj").write_text(CUBE_OBJ)
    (tmp_path / "lib" / "broken.ply").write_text("ply\nformat nonsense\n")
    lib = write_library(tmp_path / "lib", [
        {"name": "ok", "file": "cube.obj", "category": "box", "placement": "floor", "family": "indoor", "scale": 0.5},
        {"name": "gone", "file": "missing.obj", "category": "box", "placement": "floor", "family": "indoor", "scale": 1},
        {"name": "bad", "file": "broken.ply", "category": "box", "placement": "floor", "family": "indoor", "scale": 1},
        {"name": "huge", "file": "cube.obj", "category": "box", "placement": "floor", "family": "indoor", "scale": 100},
        {"name": "where", "file": "cube.obj", "category": "box", "placement": "ceiling", "family": "indoor", "scale": 1},
        {"name": "nosize", "file": "cube.obj", "category": "box", "placement": "road", "family": "outdoor"},
        {"name": "giant", "file": "cube.obj", "category": "chair", "placement": "floor", "family": "indoor",
         "size_m": [1000, 1000]},
    ], textures=[{"name": "t", "file": "nope.png"}])
    problems = check_library(lib)
    text = "\n".join(str(p) for p in problems)
    assert "missing.obj: mesh file missing" in text
    assert "broken.ply: unreadable mesh" in text
    assert "(huge): implausible size" in text
    huge = next(p for p in problems if "(huge)" in str(p))
    assert "scale 1 makes it 1 m" in huge.fix  # a fix the bad value does not already satisfy
    giant = next(p for p in problems if "(giant)" in str(p))
    assert "bad size_m [1000, 1000]" in str(giant) and "<= 100" in giant.fix
    assert "(where): unknown placement 'ceiling'" in text
    assert "(nosize): neither 'size_m' nor 'scale'" in text
    assert "nope.png: texture missing" in text
    assert "(ok)" not in text
    assert all(p.fix for p in problems)
    with pytest.raises(AssetError, match="7 problem"):
        load_libraries([lib])


def test_missing_manifest_and_foreign_json(tmp_path):
    with pytest.raises(AssetError, match="simgen assets draft"):
        load_libraries([tmp_path])
    (tmp_path / "library.json").write_text('{"hello": 1}')
    assert "not an asset manifest" in str(check_library(tmp_path)[0])


def test_draft_makes_a_manifest_that_check_accepts(tmp_path):
    shapenet = tmp_path / "myassets"
    (shapenet / "chair" / "model1").mkdir(parents=True)
    (shapenet / "chair" / "model1" / "model.obj").write_text(CUBE_OBJ)
    pbr = shapenet / "textures" / "planks"
    pbr.mkdir(parents=True)
    from PIL import Image
    for name in ("planks_color.png", "planks_roughness.png", "planks_normal.png"):
        Image.new("RGB", (8, 8), (120, 80, 40)).save(pbr / name)
    (shapenet / "sky.hdr").write_bytes(b"#?RADIANCE\n")
    manifest = draft_manifest(shapenet)
    assert [m["category"] for m in manifest["meshes"]] == ["chair"]
    assert manifest["meshes"][0]["bbox"] == [1.0, 1.0, 1.0]
    assert manifest["textures"] == [{"name": "textures_planks", "dir": "textures/planks", "tile_m": 1.0}]
    assert [h["file"] for h in manifest["hdris"]] == ["sky.hdr"]
    (shapenet / "library.json").write_text(json.dumps(manifest))
    assert check_library(shapenet) == []
    lib = load_libraries([shapenet])
    assert set(lib.textures[0]["maps"]) == {"color", "roughness", "normal"}


def test_editing_a_referenced_mesh_changes_the_library_digest(tmp_path):
    """A dataset records its libraries' digests: an edited mesh must read as another library."""
    from simgen.assets import same_libraries

    lib = tmp_path / "lib"
    (lib / "box").mkdir(parents=True)
    (lib / "box" / "model.obj").write_text(CUBE_OBJ)
    (lib / "library.json").write_text(json.dumps(draft_manifest(lib)))
    before = load_libraries([lib]).digests
    assert load_libraries([lib]).digests == before  # stable; the second read uses the cache
    assert (lib / ".simgen-digests.json").exists()
    (lib / "box" / "model.obj").write_text(CUBE_OBJ + "# edited\n")
    after = load_libraries([lib]).digests
    assert after != before and not same_libraries(before, after)
    old_style = [d.rsplit(":", 1)[0] for d in after]  # FOLDER:CRC, as datasets of earlier releases record
    assert same_libraries(old_style, after)


def test_an_obj_with_a_latin1_comment_is_measured(tmp_path):
    from simgen.assets import mesh_extent

    path = tmp_path / "chair.obj"
    path.write_bytes(b"# chaise de caf\xe9\n" + CUBE_OBJ.encode())
    assert mesh_extent(path) == [1.0, 1.0, 1.0]
