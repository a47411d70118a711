import itertools

import numpy as np
import pytest

from simgen.assets import BUILTIN_DIR, load_libraries
from simgen.config import RenderConfig
from simgen.scene import (_footprint, camera_blocked, footprints_overlap, sample_camera, sample_scene,
                          scene_family)

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


@pytest.mark.parametrize("index", range(30))
def test_indoor_objects_stand_in_the_room_without_interpenetration(index):
    s = sample_scene(RenderConfig(scene="indoor"), LIB, 0, index)
    W, D, H = s["room"]
    floor = [o for o in s["objects"] if "on" not in o]
    on_top = [o for o in s["objects"] if "on" in o]
    assert floor, "a room gets furniture"
    for o in floor:
        corners = _footprint(o)
        assert corners.min() >= -1e-6 and corners[:, 0].max() <= W + 1e-6 and corners[:, 1].max() <= D + 1e-6
        assert o["location"][2] == 0.0 and o["extent"][2] < H
    for a, b in itertools.combinations(floor, 2):
        assert not footprints_overlap(_footprint(a), _footprint(b)), (a["asset"], b["asset"])
    for o in on_top:
        support = next(f for f in floor if f["id"] == o["on"])
        assert support["supports"] and abs(support["extent"][2] - o["location"][2]) < 1e-3, "stands on its top"
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
    cfg = RenderConfig(scene="indoor")
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
    assert all(not o["thing"] for o in s["structure"]) and all(o["thing"] for o in s["objects"])
