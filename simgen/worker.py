"""The render worker: (config, seed, shard) -> one committed shard file. Imports bpy.

A pure function of its task in what it writes: scenes and cameras come from `simgen.scene`,
Cycles runs with a fixed seed. One process renders one shard and is then replaced by its pool
(simgen.engines.RECYCLE_AFTER_SHARDS says why). The engine around it (`simgen.engines`: a local
process pool, Ray tasks or a job array) only decides which shards to give it, and commits them.
"""

from __future__ import annotations

import math
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from simgen import shards
from simgen.dataset import committed, finish_shard
from simgen.assets import load_libraries
from simgen.bootstrap import import_blenderproc
from simgen.config import POST_DENOISER, RenderConfig
from simgen.denoise import denoise
from simgen.scene import instances, sample_camera, sample_scene
from simgen.store import is_url

MAX_VIEW_ATTEMPTS = 12
CHECK_GRID = (24, 18)  # ray-cast probe resolution for rejecting degenerate views before rendering

# A probed view is rejected, and another camera drawn, when:
MAX_INSIDE_FRACTION = 0.2   # more of its rays hit a back face: the camera is inside an object
MIN_VALID_FRACTION = 0.15   # less of it has depth within max_depth: mostly sky or void
MIN_MEDIAN_DEPTH_M = 0.35   # its median depth is nearer: a wall or object fills the view up close
MIN_DEPTH_SPREAD = 1.06     # its 95th / 5th depth percentile ratio is lower: one flat surface
BLENDER_CLAMP_INDIRECT = 10.0  # Cycles' default indirect clamp, for profiles that set none

# ShaderNodeMix has float, vector and colour sockets side by side under the same names; in RGBA
# mode the colour ones are inputs 6 (A) and 7 (B) and output 2 (Result) (Blender 4.2).
MIX_RGBA_A, MIX_RGBA_B, MIX_RGBA_RESULT = 6, 7, 2


@dataclass
class ShardTask:
    out: str
    config: dict[str, Any]
    library_folders: list[str]
    seed: int
    shard_index: int
    start: int
    stop: int
    threads: int = 0  # Cycles threads; 0 = all cores. A run option: results do not depend on it.
    repair: bool = False  # render even if committed (its file was found damaged)


# ------------------------------------------------------------------------------ view validation


def view_problem(depth: np.ndarray, max_depth: float, inside_fraction: float = 0.0) -> str | None:
    """Why a view is degenerate (None if it is fine). `depth` in metres, 0 or inf = invalid."""
    valid = np.isfinite(depth) & (depth > 0) & (depth <= max_depth)
    if inside_fraction > MAX_INSIDE_FRACTION:
        return "inside_object"
    if valid.mean() < MIN_VALID_FRACTION:
        return "mostly_invalid"
    d = depth[valid]
    lo, hi = np.percentile(d, [5, 95])
    if np.median(d) < MIN_MEDIAN_DEPTH_M:
        return "too_close"
    if hi / max(lo, 1e-6) < MIN_DEPTH_SPREAD:
        return "single_depth"
    return None


def probe_depth(bpy, cam2world: np.ndarray, K: np.ndarray, width: int, height: int,
                grid: tuple[int, int] = CHECK_GRID) -> tuple[np.ndarray, float]:
    """Planar depth on a coarse pixel grid by ray casting, and the share of rays that hit a back
    face (the camera is inside a closed object)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    scene = bpy.context.scene
    from mathutils import Vector

    origin = Vector(cam2world[:3, 3].tolist())
    us = (np.arange(grid[0]) + 0.5) * width / grid[0]
    vs = (np.arange(grid[1]) + 0.5) * height / grid[1]
    depth = np.zeros((grid[1], grid[0]), np.float32)
    backfaces = 0
    R = cam2world[:3, :3]
    for j, v in enumerate(vs):
        for i, u in enumerate(us):
            # pixel -> camera ray (OpenCV-style x right, y down, z forward) -> Blender camera (y up, -z forward)
            ray_cam = np.array([(u - K[0, 2]) / K[0, 0], -(v - K[1, 2]) / K[1, 1], -1.0])
            direction = R @ ray_cam
            n = np.linalg.norm(direction)
            hit, loc, normal, *_ = scene.ray_cast(depsgraph, origin, Vector((direction / n).tolist()))
            if hit:
                dist = (loc - origin).length
                depth[j, i] = dist / n  # planar z = distance along the ray / ray length at z = 1
                if normal.dot(Vector(direction.tolist())) > 0:
                    backfaces += 1
    return depth, backfaces / depth.size


# -------------------------------------------------------------------------------- scene building


def _material(bproc, spec: dict[str, Any], name: str):
    mat = bproc.material.create(name)
    nodes, links = mat.nodes, mat.links
    bsdf = mat.get_the_one_node_with_type("BsdfPrincipled")
    bsdf.inputs["Roughness"].default_value = spec["roughness"]
    bsdf.inputs["Metallic"].default_value = spec["metallic"]
    base = (*spec["base_color"], 1.0)
    bsdf.inputs["Base Color"].default_value = base
    if spec.get("emission"):
        bsdf.inputs["Emission Color"].default_value = base
        bsdf.inputs["Emission Strength"].default_value = spec["emission"]
        # A glowing face is seen, not sampled as a light: the area light under it lights the room
        # (7% less time per frame measured with ceiling panels in every room).
        mat.blender_obj.cycles.emission_sampling = "NONE"
    if spec.get("texture") or spec.get("procedural"):
        # World-space box projection: meshes need no UVs and textures keep their metric size.
        geo = nodes.new("ShaderNodeNewGeometry")
        mapping = nodes.new("ShaderNodeMapping")
        mapping.inputs["Scale"].default_value = [1.0 / spec["tile_m"]] * 3
        links.new(geo.outputs["Position"], mapping.inputs["Vector"])
    if spec.get("texture"):
        maps = spec["texture"]
        for kind, path in maps.items():
            img = nodes.new("ShaderNodeTexImage")
            img.image = bproc.bpy.data.images.load(path, check_existing=True)
            img.projection, img.projection_blend = "BOX", 0.25
            links.new(mapping.outputs["Vector"], img.inputs["Vector"])
            if kind != "color":
                img.image.colorspace_settings.name = "Non-Color"
            if kind == "color":
                tint = nodes.new("ShaderNodeMix")
                tint.data_type, tint.blend_type = "RGBA", "MULTIPLY"
                tint.inputs["Factor"].default_value = 0.35
                links.new(img.outputs["Color"], tint.inputs[MIX_RGBA_A])
                tint.inputs[MIX_RGBA_B].default_value = base
                links.new(tint.outputs[MIX_RGBA_RESULT], bsdf.inputs["Base Color"])
            elif kind == "roughness":
                links.new(img.outputs["Color"], bsdf.inputs["Roughness"])
            elif kind == "metallic":
                links.new(img.outputs["Color"], bsdf.inputs["Metallic"])
            elif kind == "normal":
                nmap = nodes.new("ShaderNodeNormalMap")
                links.new(img.outputs["Color"], nmap.inputs["Color"])
                links.new(nmap.outputs["Normal"], bsdf.inputs["Normal"])
    elif spec.get("procedural"):
        kind = spec["procedural"]
        tex = nodes.new({"noise": "ShaderNodeTexNoise", "checker": "ShaderNodeTexChecker",
                         "wave": "ShaderNodeTexWave", "voronoi": "ShaderNodeTexVoronoi"}[kind])
        links.new(mapping.outputs["Vector"], tex.inputs["Vector"])
        mix = nodes.new("ShaderNodeMix")
        mix.data_type = "RGBA"
        links.new(tex.outputs["Fac"] if "Fac" in tex.outputs else tex.outputs["Distance"], mix.inputs["Factor"])
        mix.inputs[MIX_RGBA_A].default_value = base
        mix.inputs[MIX_RGBA_B].default_value = (base[0] * 0.45, base[1] * 0.45, base[2] * 0.45, 1.0)
        links.new(mix.outputs[MIX_RGBA_RESULT], bsdf.inputs["Base Color"])
    return mat


def _load_mesh(bproc, item: dict[str, Any], cache: dict[str, Any]):
    path = item["file"]
    if path not in cache:
        suffix = Path(path).suffix.lower()
        if suffix == ".blend":
            objs = [o for o in bproc.loader.load_blend(path) if hasattr(o, "get_mesh")]
        elif suffix == ".obj":
            axes = {"up_axis": "Z", "forward_axis": "Y"} if item.get("up", "z") == "z" else {}
            objs = bproc.loader.load_obj(path, **axes)
        else:
            objs = bproc.loader.load_obj(path)
        if not objs:
            raise RuntimeError(f"{path}: no mesh objects in file")
        if len(objs) > 1:
            objs[0].join_with_other_objects(objs[1:])
        proto = objs[0]
        proto.persist_transformation_into_mesh()
        proto.hide(True)
        cache[path] = proto
    obj = cache[path].duplicate()
    obj.hide(False)
    return obj


def build_scene(bproc, scene: dict[str, Any]) -> None:
    """Create the Blender objects, materials, lights and world of one scene record."""
    bproc.clean_up(clean_up_camera=False)
    cache: dict[str, Any] = {}
    for item in scene["structure"] + scene["objects"]:
        name = f"inst-{item['id']:05d}"
        if item["kind"] == "box":
            obj = bproc.object.create_primitive("CUBE")
            sx, sy, sz = item["size"]
            x, y, z = item["location"]
            obj.set_scale([sx / 2, sy / 2, sz / 2])
            obj.set_rotation_euler([0.0, 0.0, item.get("yaw", 0.0)])
            obj.set_location([x, y, z + sz / 2])
        else:
            obj = _load_mesh(bproc, item, cache)
            s, yaw = item["scale"], item["yaw"]
            obj.set_scale([s, s, s])
            obj.set_rotation_euler([0.0, 0.0, yaw])
            # put the centre of the bottom face of its bounding box at the requested location
            corners = np.asarray(obj.get_bound_box(local_coords=True))
            bottom = np.array([(corners[:, 0].min() + corners[:, 0].max()) / 2,
                               (corners[:, 1].min() + corners[:, 1].max()) / 2, corners[:, 2].min()]) * s
            c, si = math.cos(yaw), math.sin(yaw)
            offset = np.array([c * bottom[0] - si * bottom[1], si * bottom[0] + c * bottom[1], bottom[2]])
            obj.set_location(list(np.asarray(item["location"]) - offset))
        obj.set_name(name)
        # BlenderProc numbers objects for segmentation only when the output is enabled (once per
        # process); objects of later scenes need their own pass index.
        obj.blender_obj.pass_index = item["id"]
        obj.set_cp("category_id", item["id"])
        obj.replace_materials(_material(bproc, item["material"], f"mat-{item['id']:05d}"))
    for proto in cache.values():
        proto.delete()

    for i, spec in enumerate(scene["lights"]):
        light = bproc.types.Light(light_type=spec["type"], name=f"light-{i}")
        light.set_color(spec["color"])
        light.set_energy(spec["energy"])
        if spec["type"] == "SUN":
            el, az = math.radians(spec["elevation_deg"]), math.radians(spec["azimuth_deg"])
            light.set_rotation_euler([math.pi / 2 - el, 0.0, az])
        else:
            light.set_location(spec["location"])
            if spec["type"] == "AREA":
                light.blender_obj.data.size = spec.get("size", 1.0)
    world = scene["world"]
    if world.get("hdri"):
        bproc.world.set_world_background_hdr_img(world["hdri"], strength=world["strength"])
    else:
        bproc.renderer.set_world_background(world["color"], strength=world["strength"])


# ---------------------------------------------------------------------------------- the worker


_SETUP_DONE: dict[str, Any] = {}


def _setup_renderer(bproc, config: RenderConfig, threads: int) -> None:
    """Renderer settings are per process; the pool recycles processes, so this runs once each."""
    key = repr(config.to_dict())
    if _SETUP_DONE.get("key") == key:
        return
    if _SETUP_DONE:
        raise RuntimeError("one worker process renders one config")
    r = config.render_settings()
    intr = config.resolved_intrinsics()
    bproc.camera.set_resolution(intr.width, intr.height)
    apply_render_settings(bproc, r)
    bproc.renderer.set_cpu_threads(threads)
    bproc.bpy.context.scene.cycles.seed = 0  # fixed noise pattern: same config + seed -> same RGB
    bproc.renderer.enable_depth_output(activate_antialiasing=False)
    bproc.renderer.enable_segmentation_output(map_by=["instance", "name"], default_values={"name": ""})
    bproc.renderer.enable_diffuse_color_output()  # the denoiser's guide (a few ms per frame)
    _SETUP_DONE["key"] = key


def apply_render_settings(bproc, r: dict[str, Any]) -> None:
    """A profile's Cycles settings (RENDER_PROFILES); a "post" denoiser runs after the render."""
    bproc.renderer.set_max_amount_of_samples(r["samples"])
    bproc.renderer.set_noise_threshold(r["noise_threshold"])
    bproc.renderer.set_denoiser(None if r["denoiser"] == POST_DENOISER else r["denoiser"])
    bproc.renderer.set_light_bounces(diffuse_bounces=r["diffuse_bounces"], glossy_bounces=r["glossy_bounces"],
                                     max_bounces=r["max_bounces"], transmission_bounces=r["max_bounces"],
                                     transparent_max_bounces=8)
    cycles = bproc.bpy.context.scene.cycles
    cycles.sample_clamp_indirect = r["clamp_indirect"] if r["clamp_indirect"] > 0 else BLENDER_CLAMP_INDIRECT
    cycles.use_light_tree = r["light_tree"]
    bproc.bpy.context.scene.view_settings.view_transform = r.get("view_transform", "Filmic")


def frame_rgb(data: dict[str, Any], k: int, r: dict[str, Any]) -> np.ndarray:
    """Frame k's RGB (uint8) of BlenderProc's render output, denoised when the profile says so."""
    rgb = np.asarray(data["colors"][k], np.uint8)[..., :3]
    if r["denoiser"] == POST_DENOISER:
        rgb = denoise(rgb, np.asarray(data["diffuse"][k], np.uint8)[..., :3])
    return rgb


def _camera_matrix(intr) -> np.ndarray:
    return np.array([[intr.fx, 0, intr.cx], [0, intr.fy, intr.cy], [0, 0, 1.0]])


def instance_map(index_map: np.ndarray, attributes: list[dict[str, Any]]) -> np.ndarray:
    """BlenderProc's per-render object indices -> the scene's instance ids (uint16, 0 = none).
    Objects are named inst-ID by build_scene; anything else (background) maps to 0."""
    lut = np.zeros(int(index_map.max(initial=0)) + 1, np.uint16)
    for entry in attributes:
        name = entry.get("name", "")
        if name.startswith("inst-") and entry["idx"] < len(lut):
            lut[entry["idx"]] = int(name[5:])
    return lut[np.asarray(index_map)]


def sample_meta(index: int, config: RenderConfig, scene: dict[str, Any], seed: int, cam: dict[str, Any],
                scene_instances: list[dict[str, Any]], inst: np.ndarray) -> dict[str, Any]:
    """The JSON record of one sample (docs/shard-format.md): camera, the instances it shows, scene."""
    intr = config.resolved_intrinsics()
    present = set(np.unique(inst).tolist())
    return {
        "index": index, "scene_index": scene["scene_index"], "scene_family": scene["family"], "seed": seed,
        "view": index % config.views_per_scene, "view_attempt": cam["attempt"],
        "viewpoint": cam.get("viewpoint"), "room_type": scene.get("room_type"),
        "view_forced": bool(cam.get("forced", False)),
        "intrinsics": {"fx": intr.fx, "fy": intr.fy, "cx": intr.cx, "cy": intr.cy,
                       "width": intr.width, "height": intr.height},
        "cam2world": cam["cam2world"], "camera_convention": "blender (x right, y up, looks down -z)",
        "instances": [r for r in scene_instances if r["id"] in present],
        "render": config.render_settings(),
    }


def _choose_view(bproc, config: RenderConfig, scene: dict[str, Any], seed: int, index: int, K: np.ndarray,
                 rejected: dict[str, int]) -> dict[str, Any]:
    """The first of MAX_VIEW_ATTEMPTS cameras whose probed depth is not degenerate (else the
    last one, flagged 'forced'); counts the rejections by reason."""
    intr, max_depth = config.resolved_intrinsics(), config.resolved_max_depth()
    for attempt in range(MAX_VIEW_ATTEMPTS):
        cam = sample_camera(config, scene, seed, index, attempt)
        probe, inside = probe_depth(bproc.bpy, np.asarray(cam["cam2world"]), K, intr.width, intr.height)
        problem = view_problem(probe, max_depth, inside)
        if problem is None:
            return cam
        rejected[problem] = rejected.get(problem, 0) + 1
    cam["forced"] = True  # every attempt was degenerate: keep the last, flagged
    return cam


def rendered_by() -> dict[str, str]:
    """The machine (and, under Ray, the node) that rendered a shard: recorded to find a bad node."""
    where = {"host": socket.gethostname()}
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            where["ray_node"] = ray.get_runtime_context().get_node_id()
    return where


def render_shard(task: ShardTask, on_sample: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Render samples [task.start, task.stop) and write them as shard file `task.shard_index`.

    Returns the shard's record (simgen.dataset.finish_shard: in a folder, still under its temporary name
    for the runner to commit; at a URL, committed) plus "rejected" ({reason: count} of degenerate views),
    "forced_views" and "rendered_by"."""
    name = shards.shard_name(task.shard_index)
    if is_url(task.out) and not task.repair and (done := committed(task.out, name, task.stop - task.start)):
        return dict(done, already=True)  # another driver on this prefix committed it since the plan was made
    config = RenderConfig.from_dict(task.config)
    bproc = import_blenderproc()
    _setup_renderer(bproc, config, task.threads)
    library = load_libraries(task.library_folders, check=False)
    intr = config.resolved_intrinsics()
    K = _camera_matrix(intr)
    max_depth = config.resolved_max_depth()
    settings = config.render_settings()
    rejected: dict[str, int] = {}
    samples: list[shards.Sample] = []
    by_scene: dict[int, list[int]] = {}
    for i in range(task.start, task.stop):
        by_scene.setdefault(i // config.views_per_scene, []).append(i)

    for scene_index, sample_indices in by_scene.items():
        scene = sample_scene(config, library, task.seed, scene_index)
        build_scene(bproc, scene)
        bproc.utility.reset_keyframes()
        bproc.camera.set_intrinsics_from_K_matrix(K, intr.width, intr.height, clip_start=0.05,
                                                  clip_end=max(max_depth * 2, 100.0))
        cams = [_choose_view(bproc, config, scene, task.seed, i, K, rejected) for i in sample_indices]
        for cam in cams:
            bproc.camera.add_camera_pose(np.asarray(cam["cam2world"]))
        data = bproc.renderer.render(verbose=False)
        scene_instances = instances(scene)
        for k, i in enumerate(sample_indices):
            depth = np.asarray(data["depth"][k], np.float32)
            depth = np.where(np.isfinite(depth) & (depth <= max_depth), depth, 0.0)
            inst = instance_map(np.asarray(data["instance_segmaps"][k]), data["instance_attribute_maps"][k])
            meta = sample_meta(i, config, scene, task.seed, cams[k], scene_instances, inst)
            samples.append(shards.Sample(i, frame_rgb(data, k, settings), depth, inst, meta))
            if on_sample is not None:
                on_sample(1)

    return finish_shard(task.out, name, samples, config.resolved_depth_scale(), rejected=rejected,
                        forced_views=sum(1 for s in samples if s.meta["view_forced"]), rendered_by=rendered_by())
