import itertools

import numpy as np
import pytest

from simgen.assets import BUILTIN_DIR, load_libraries
from simgen.config import RenderConfig
from simgen.rooms import DEFAULT_ROOMS, ROOM_TYPES, VIEWPOINT_MIX, VIEWPOINTS
from simgen.layout import footprint as _footprint
from simgen.layout import footprints_overlap, top
from simgen.scene import camera_blocked, room_type, sample_camera, sample_scene, scene_family

LIB = load_libraries([BUILTIN_DIR])


@pytest.mark.parametrize("family", ["indoor", "outdoor"])
def test_scenes_are_a_pure_function_of_seed_and_index(family):
    cfg = RenderConfig(scene=family)
    assert sample_scene(cfg, LIB, 7, 3) == sample_scene(cfg, LIB, 7, 3)
    assert sample_scene(cfg, LIB, 7, 3) != sample_scene(cfg, LIB, 8, 3)
    assert sample_scene(cfg, LIB, 7, 3) != sample_scene(cfg, LIB, 7, 4)
    s = sample_scene(cfg, LIB, 7, 3)
    assert sample_camera(cfg, s, 7, 12, 0) == sample_camera(cfg, s, 7, 12, 0)
    assert sample_camera(cfg, s, 7, 12, 0) != sample_camera(cfg, s, 7, 12, 1)


def test_footprint_overlap_test():
    a = _footprint({"location": [0, 0, 0], "extent": [2, 2, 1], "yaw": 0.0})
    b = _footprint({"location": [1.9, 0, 0], "extent": [2, 2, 1], "yaw": 0.0})
    c = _footprint({"location": [2.2, 0, 0], "extent": [2, 2, 1], "yaw": 0.0})
    d = _footprint({"location": [2.3, 2.3, 0], "extent": [2, 2, 1], "yaw": np.pi / 4})  # diagonal, apart
    assert footprints_overlap(a, b) and not footprints_overlap(a, c) and not footprints_overlap(a, d)
    assert footprints_overlap(a, c, gap=0.5)


@pytest.mark.parametrize("rooms,index", [(r, i) for r in ROOM_TYPES for i in range(6)])
def test_indoor_objects_stand_in_the_room_without_interpenetration(rooms, index):
    s = sample_scene(RenderConfig(scene="indoor", rooms=[rooms]), LIB, 0, index)
    assert s["room_type"] == rooms
    W, D, H = s["room"]
    floor = [o for o in s["objects"] if "on" not in o]
    on_top = [o for o in s["objects"] if "on" in o]
    assert floor, "a room gets furniture"
    for o in floor:
        corners = _footprint(o)
        assert corners.min() >= -1e-3 and corners[:, 0].max() <= W + 1e-3 and corners[:, 1].max() <= D + 1e-3  # 4 decimals
        assert top(o) < H
        assert o["location"][2] == 0.0 or o["category"] == "wall_cabinet", "stands on the floor"
    for a, b in itertools.combinations(floor, 2):
        if a["location"][2] == b["location"][2] == 0.0:
            assert not footprints_overlap(_footprint(a), _footprint(b)), (a["category"], b["category"])
    for o in on_top:
        support = next(f for f in floor if f["id"] == o["on"])
        assert support["supports"] and abs(top(support) - o["location"][2]) < 1e-3, "stands on its top"
        sup, centre = _footprint(support), np.array(o["location"][:2])
        # inside the support's top (convex quad): all cross products have one sign
        signs = [(b - a)[0] * (centre - a)[1] - (b - a)[1] * (centre - a)[0]
                 for a, b in zip(sup, np.roll(sup, -1, axis=0))]
        assert all(x >= 0 for x in signs) or all(x <= 0 for x in signs)
    for a, b in itertools.combinations(on_top, 2):
        if a["location"][2] == b["location"][2] and a["on"] == b["on"]:
            assert not footprints_overlap(_footprint(a), _footprint(b))


@pytest.mark.parametrize("index", range(10))
def test_cameras_are_inside_the_room_and_outside_objects(index):
    cfg = RenderConfig(scene="indoor", viewpoint="any")
    s = sample_scene(cfg, LIB, 1, index)
    W, D, H = s["room"]
    for i in range(4):
        m = np.asarray(sample_camera(cfg, s, 1, index * 4 + i, 0)["cam2world"])
        p = m[:3, 3]
        assert 0 < p[0] < W and 0 < p[1] < D and 0 < p[2] < H
        assert not camera_blocked(s, p, 0.2)
        np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-5)
        forward = -m[:3, 2]
        assert -np.sin(np.radians(45)) <= forward[2] <= np.sin(np.radians(15))  # pitch within range


@pytest.mark.parametrize("index", range(10))
def test_outdoor_street_has_sky_road_vehicles_and_a_camera_on_the_road(index):
    cfg = RenderConfig(scene="outdoor")
    s = sample_scene(cfg, LIB, 2, index)
    cats = {o["category"] for o in s["structure"]}
    assert {"ground", "road", "sidewalk"} <= cats
    vehicles = [o for o in s["objects"] if o["category"] in ("car", "van", "truck")]
    for a, b in itertools.combinations(vehicles, 2):
        assert not footprints_overlap(_footprint(a), _footprint(b))
    m = np.asarray(sample_camera(cfg, s, 2, index, 0)["cam2world"])
    assert abs(m[1, 3]) < s["road"][0] / 2 and 1.3 < m[2, 3] < 2.1
    assert not camera_blocked(s, m[:3, 3], 0.4)


def test_mixed_scenes_follow_the_ratio():
    cfg = RenderConfig(scene="mixed", indoor_ratio=0.25)
    fams = [scene_family(cfg, 0, i) for i in range(400)]
    assert 0.18 < fams.count("indoor") / 400 < 0.32


def test_instance_ids_are_unique_and_dense():
    s = sample_scene(RenderConfig(scene="indoor"), LIB, 0, 0)
    ids = [o["id"] for o in s["structure"] + s["objects"]]
    assert ids == list(range(1, len(ids) + 1))
    assert all(not o["thing"] for o in s["structure"])
    assert all(o["thing"] == (o["kind"] == "mesh") for o in s["objects"]), "built-in meshes are things, boxes not"


@pytest.mark.parametrize("viewpoint", list(VIEWPOINTS))
def test_viewpoints_keep_their_heights_and_pitches(viewpoint):
    cfg = RenderConfig(scene="indoor", viewpoint=viewpoint)
    used = set()
    for index in range(12):
        s = sample_scene(cfg, LIB, 3, index)
        W, D, H = s["room"]
        for i in range(3):
            cam = sample_camera(cfg, s, 3, index * 3 + i, 0)
            m = np.asarray(cam["cam2world"])
            p, forward = m[:3, 3], -m[:3, 2]
            pitch = np.degrees(np.arcsin(forward[2]))
            vp = VIEWPOINTS[cam["viewpoint"]]
            used.add(cam["viewpoint"])
            assert 0 < p[0] < W and 0 < p[1] < D and 0 < p[2] < H
            assert vp["pitch"][0] - 1e-3 <= pitch <= vp["pitch"][1] + 1e-3  # 6 decimals in the record
            if cam["viewpoint"] == "tabletop":
                assert not camera_blocked(s, p, 0.09)
                surfaces = [o for o in s["objects"] if o.get("supports")]
                assert any(top(o) < p[2] for o in surfaces), "looks down at a table top"
            else:
                assert not camera_blocked(s, p, 0.2)
                assert vp["height"][0] <= p[2] <= vp["height"][1]
    assert viewpoint in used


def test_mixed_viewpoints_and_default_rooms_follow_their_shares():
    cfg = RenderConfig(scene="indoor")
    rooms = [room_type(cfg, 0, i) for i in range(600)]
    assert set(rooms) == set(DEFAULT_ROOMS), "generic is opt-in"
    assert min(rooms.count(r) for r in DEFAULT_ROOMS) > 60
    s = sample_scene(RenderConfig(scene="indoor", rooms=["office"]), LIB, 0, 0)
    views = [sample_camera(cfg, s, 0, i, 0)["viewpoint"] for i in range(300)]
    for name, share in VIEWPOINT_MIX.items():
        assert abs(views.count(name) / 300 - share) < 0.08, name


@pytest.mark.parametrize("index", range(8))
def test_doors_are_kept_clear_and_openings_cut_their_walls(index):
    from simgen.indoor import room_walls
    from simgen.rooms import DOOR_CLEARANCE
    s = sample_scene(RenderConfig(scene="indoor", rooms=["corridor"]), LIB, 5, index)
    W, D, H = s["room"]
    walls = room_walls(W, D)
    doors = [o for o in s["openings"] if o["kind"] == "door"]
    assert doors, "corridors have doors"
    for o in doors:
        zone = walls[o["wall"]].zone(o["a0"], o["a1"], 0.0, DOOR_CLEARANCE)
        for obj in s["objects"]:
            if obj["location"][2] == 0.0:
                assert not footprints_overlap(zone, _footprint(obj)), obj["category"]
        # no wall box covers the opening's middle at mid-height
        mid = walls[o["wall"]].point((o["a0"] + o["a1"]) / 2, -0.05)
        for w in (b for b in s["structure"] if b["category"] == "wall"):
            (x, y, z), (sx, sy, sz) = w["location"], w["size"]
            inside = abs(mid[0] - x) < sx / 2 and abs(mid[1] - y) < sy / 2 and z < (o["z0"] + o["z1"]) / 2 < z + sz
            assert not inside


def test_user_categories_show_up_in_rooms():
    """A swapped-in library's own categories are placed even though no room type names them."""
    from simgen.assets import Library
    robot = {"name": "robot_00", "file": "robot.obj", "category": "robot", "thing": True, "placement": "floor",
             "family": "indoor", "scale": 1.0, "bbox": [0.5, 0.5, 1.2], "supports": False}
    lib = Library(meshes=LIB.meshes + [robot], textures=LIB.textures)
    cats = [o["category"] for i in range(20) for o in sample_scene(RenderConfig(scene="indoor"), lib, 0, i)["objects"]]
    assert "robot" in cats
    own_only = Library(meshes=[robot], textures=LIB.textures)  # --no-builtin-assets with one mesh
    for rooms in ("office", "generic"):
        objs = sample_scene(RenderConfig(scene="indoor", rooms=[rooms]), own_only, 0, 1)["objects"]
        assert {o["category"] for o in objs if o["kind"] == "mesh"} == {"robot"}


def test_unknown_room_type_is_refused():
    from simgen.options import ConfigError
    with pytest.raises(ConfigError, match="--rooms 'attic': choose one of"):
        RenderConfig(rooms=["attic"]).validate()
