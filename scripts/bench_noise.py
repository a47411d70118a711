#!/usr/bin/env python
"""Render noise and speed of every profile, in one run, on the same views.

For each of --scenes indoor scenes (seed 0) one view is rendered with every profile
(simgen/config.py RENDER_PROFILES, through the worker's own settings and denoiser) and once as
the reference: the default profile's light settings (bounces, clamp) at --reference-samples
samples with adaptive sampling, no denoiser. Prints per profile:
  * seconds per image (Cycles + the profile's denoiser; scene building and an untimed warm-up
    render excluded, so the figures compare rendering itself; the denoiser's one-off set-up,
    ~2 s per process, is in the warm-up);
  * noise sigma: Immerkaer's reference-free estimate on the grey image, in grey levels
    (simgen/imagestats.py; texture counts too, so compare profiles on the same views);
  * PSNR against the reference (of the same views and light settings: it measures noise and
    denoiser blur, not the bias of other bounce settings; profiles with other bounces show that
    bias too);
and the ratio of each profile's speed to BlenderProc's defaults. With --real, the noise sigma of
real camera frames resized to the same resolution, for comparison.

    python scripts/bench_noise.py [--resolution 160x120] [--scenes 4] [--reference-samples 1024] \
        [--real ../shared/data/indoor-scenes] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from simgen.assets import load_libraries
from simgen.bootstrap import import_blenderproc
from simgen.config import RENDER_PROFILES, RenderConfig
from simgen.imagestats import noise_sigma
from simgen.options import parse_size
from simgen.runner import library_folders
from simgen.scene import sample_scene
from simgen.worker import _camera_matrix, _choose_view, _setup_renderer, apply_render_settings, build_scene, frame_rgb

REFERENCE_THRESHOLD = 0.005  # adaptive-sampling noise threshold of the reference render


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    mse = np.mean((image.astype(np.float64) - reference.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def render_view(bproc, settings: dict) -> tuple[np.ndarray, float]:
    apply_render_settings(bproc, settings)
    t0 = time.perf_counter()
    data = bproc.renderer.render(verbose=False)
    rgb = frame_rgb(data, 0, settings)
    return rgb, time.perf_counter() - t0


def real_noise(root: Path, size, n: int) -> float:
    """Mean noise sigma of n real frames (evenly spaced over the folder's index), resized (box filter)."""
    import csv

    with open(root / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    picks = [rows[int(i)] for i in np.linspace(0, len(rows) - 1, n)]
    sigmas = []
    for row in picks:
        with Image.open(root / row["rgb"]) as im:
            sigmas.append(noise_sigma(np.asarray(im.convert("RGB").resize(tuple(size), Image.BOX))))
    return float(np.mean(sigmas))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=parse_size, default=parse_size("160x120"))
    ap.add_argument("--scenes", type=int, default=4, help="indoor scenes, one view each")
    ap.add_argument("--reference-samples", type=int, default=1024)
    ap.add_argument("--profiles", default=",".join(RENDER_PROFILES))
    ap.add_argument("--real", type=Path, help="RGB-D folder with index.csv (real frames' noise, for comparison)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    profiles = args.profiles.split(",")
    config = RenderConfig(scene="indoor", resolution=args.resolution)
    bproc = import_blenderproc()
    _setup_renderer(bproc, config, threads=0)
    library = load_libraries(library_folders(config), check=False)
    intr = config.resolved_intrinsics()
    K = _camera_matrix(intr)
    reference = {**config.render_settings(), "samples": args.reference_samples,
                 "noise_threshold": REFERENCE_THRESHOLD, "denoiser": None}
    rows: dict[str, dict[str, list[float]]] = {p: {"seconds": [], "sigma": [], "psnr": []} for p in profiles}
    reference_sigma = []
    for index in range(args.scenes):
        scene = sample_scene(config, library, 0, index)
        build_scene(bproc, scene)
        bproc.utility.reset_keyframes()
        bproc.camera.set_intrinsics_from_K_matrix(K, intr.width, intr.height, clip_start=0.05, clip_end=100.0)
        cam = _choose_view(bproc, config, scene, 0, index * config.views_per_scene, K, {})
        bproc.camera.add_camera_pose(np.asarray(cam["cam2world"]))
        # warm-up, untimed: the scene's first render and the denoiser's one-off set-up (~2 s, once per
        # process: a worker pays it once per shard)
        render_view(bproc, {**RENDER_PROFILES["fast"], "samples": 1})
        ref, ref_seconds = render_view(bproc, reference)
        reference_sigma.append(noise_sigma(ref))
        for p in profiles:
            rgb, seconds = render_view(bproc, RENDER_PROFILES[p])
            for key, value in (("seconds", seconds), ("sigma", noise_sigma(rgb)), ("psnr", psnr(rgb, ref))):
                rows[p][key].append(value)
        print(f"scene {index}: reference {ref_seconds:.1f} s, " +
              ", ".join(f"{p} {rows[p]['seconds'][-1]:.2f} s" for p in profiles), flush=True)
    summary = {p: {k: float(np.mean(v)) for k, v in r.items()} for p, r in rows.items()}
    base = summary.get("blenderproc", {}).get("seconds")
    print(f"\n{args.scenes} indoor views at {args.resolution}; reference: {args.reference_samples} samples, adaptive "
          f"{REFERENCE_THRESHOLD}, the default profile's bounces, no denoiser (its own noise sigma "
          f"{np.mean(reference_sigma):.2f})")
    print(f"{'profile':12s} {'s/image':>8s} {'noise sigma':>11s} {'PSNR dB':>8s} {'speed vs blenderproc':>21s}")
    for p, s in summary.items():
        ratio = f"{base / s['seconds']:.1f}x" if base else "n/a"
        print(f"{p:12s} {s['seconds']:8.3f} {s['sigma']:11.2f} {s['psnr']:8.2f} {ratio:>21s}")
    result = {"resolution": str(args.resolution), "scenes": args.scenes, "profiles": summary,
              "reference_sigma": float(np.mean(reference_sigma))}
    if args.real:
        result["real_sigma"] = real_noise(args.real, args.resolution, 64)
        print(f"{'real frames':12s} {'':8s} {result['real_sigma']:11.2f}   (64 frames of {args.real}, box-resized)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
    # a process that initialised BlenderProc on the pip bpy segfaults at interpreter exit (measured,
    # also without the denoiser): leave without running the exit handlers, the results are written
    sys.stdout.flush()
    os._exit(0)
