import colorsys

import numpy as np

from simgen.assets import BUILTIN_DIR, load_libraries
from simgen.config import RenderConfig
from simgen.materials import MATERIAL_FAMILIES, plausible_material, sample_material, texture_kind
from simgen.scene import sample_scene

LIB = load_libraries([BUILTIN_DIR])
KIND_OF_FILE = {t["maps"]["color"]: texture_kind(t) for t in LIB.textures}


def _hsv(mat):
    return colorsys.rgb_to_hsv(*mat["base_color"])


def test_texture_kind_comes_from_the_field_or_the_name():
    assert texture_kind({"name": "Wood049_1K", "file": "x.png"}) == "wood"
    assert texture_kind({"name": "Planks", "kind": "laminate"}) == "laminate"
    assert texture_kind({"name": "Ground037"}) is None
    assert {texture_kind(t) for t in LIB.textures} >= {"wood", "plaster", "carpet", "paper", "facade"}


def test_plausible_materials_stay_in_their_families():
    rng = np.random.default_rng(0)
    walls = [plausible_material(rng, LIB, "wall") for _ in range(200)]
    paint = MATERIAL_FAMILIES["paint"]
    assert all(_hsv(m)[1] <= paint["sat"][1] + 1e-3 and _hsv(m)[2] >= paint["val"][0] - 1e-3 for m in walls)
    assert {KIND_OF_FILE[m["texture"]["color"]] for m in walls if m["texture"]} == {"plaster"}
    floors = [plausible_material(rng, LIB, "floor") for _ in range(300)]
    kinds = {KIND_OF_FILE[m["texture"]["color"]] for m in floors if m["texture"]}
    assert kinds <= {"wood", "laminate", "tiles", "marble", "carpet", "concrete"} and len(kinds) >= 4
    metal = [plausible_material(rng, LIB, "lamp") for _ in range(100)]
    assert any(m["metallic"] == 1.0 for m in metal) and any(m["metallic"] == 0.0 for m in metal)
    monitors = [plausible_material(rng, LIB, "monitor") for _ in range(50)]
    assert all(_hsv(m)[2] <= 0.2 + 1e-3 for m in monitors), "screens are dark"


def test_random_style_keeps_the_saturated_randomisation():
    rng = np.random.default_rng(1)
    sofas_random = [sample_material(rng, LIB, "sofa", "random") for _ in range(200)]
    sofas_plausible = [sample_material(rng, LIB, "sofa", "plausible") for _ in range(200)]
    assert max(_hsv(m)[1] for m in sofas_plausible) <= 0.55 + 1e-3
    assert np.mean([_hsv(m)[1] > 0.6 for m in sofas_random]) > 0.2
    kinds = {KIND_OF_FILE[m["texture"]["color"]] for m in sofas_random if m["texture"]}
    assert len(kinds) >= 6, "random style puts any texture on anything"


def test_the_materials_flag_changes_the_scene_and_nothing_else():
    a = sample_scene(RenderConfig(scene="indoor"), LIB, 0, 2)
    b = sample_scene(RenderConfig(scene="indoor", materials="random"), LIB, 0, 2)
    assert a["room_type"] == b["room_type"]
    assert [o["material"] for o in a["objects"]] != [o["material"] for o in b["objects"]]
