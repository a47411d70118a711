"""The render worker's plain-numpy parts (no Blender needed): instance ids, sample records, views."""

import numpy as np

from simgen import worker
from simgen.config import RenderConfig


def test_instance_map_turns_render_indices_into_scene_ids():
    index_map = np.array([[0, 1], [2, 3]])
    attributes = [{"idx": 0, "name": ""}, {"idx": 1, "name": "inst-00007"}, {"idx": 2, "name": "inst-00002"},
                  {"idx": 3, "name": "Camera"}, {"idx": 9, "name": "inst-00005"}]  # idx 9 is not in this render
    inst = worker.instance_map(index_map, attributes)
    assert inst.dtype == np.uint16
    assert inst.tolist() == [[0, 7], [2, 0]]


def test_sample_meta_lists_only_the_instances_in_view():
    config = RenderConfig(views_per_scene=4)
    scene = {"scene_index": 3, "family": "indoor"}
    instances = [{"id": k, "category": "box", "asset": None, "thing": k > 1} for k in (1, 2, 3)]
    cam = {"cam2world": np.eye(4).tolist(), "attempt": 2}
    meta = worker.sample_meta(13, config, scene, 5, cam, instances, np.array([[0, 3], [3, 1]], np.uint16))
    assert [i["id"] for i in meta["instances"]] == [1, 3]
    assert meta["view"] == 1 and meta["view_attempt"] == 2 and meta["view_forced"] is False
    assert meta["intrinsics"]["width"] == 320 and meta["scene_family"] == "indoor" and meta["seed"] == 5


def test_view_problems_at_their_thresholds():
    ramp = np.linspace(1.0, 3.0, 100).reshape(10, 10)
    assert worker.view_problem(ramp, 20.0) is None
    assert worker.view_problem(ramp, 20.0, inside_fraction=worker.MAX_INSIDE_FRACTION + 0.01) == "inside_object"
    mostly_void = np.where(np.arange(100).reshape(10, 10) < 100 * worker.MIN_VALID_FRACTION - 1, ramp, 0.0)
    assert worker.view_problem(mostly_void, 20.0) == "mostly_invalid"
    assert worker.view_problem(ramp * worker.MIN_MEDIAN_DEPTH_M / 2.5, 20.0) == "too_close"
    assert worker.view_problem(np.full((10, 10), 2.0), 20.0) == "single_depth"
