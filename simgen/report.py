"""`simgen inspect`: what a dataset holds, and whether its shards are intact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from simgen.shards import ShardError
from simgen.dataset import DatasetReader


def inspect_dataset(root: str | Path, verify: bool = True, max_samples: int | None = None) -> dict[str, Any]:
    """Counts, depth range and histogram, objects per image, rejected views, checksum results."""
    ds = DatasetReader(root)
    report: dict[str, Any] = {"root": str(root), "samples": len(ds), "requested": ds.manifest["n"],
                              "shards": len(ds.shards), "depth_scale": ds.depth_scale,
                              "config": ds.manifest["config"], "seed": ds.manifest["seed"]}
    rejected: dict[str, int] = {}
    for r in ds.shards:
        for reason, c in r.get("rejected", {}).items():
            rejected[reason] = rejected.get(reason, 0) + c
    report["rejected_views"] = rejected
    report["forced_views"] = sum(r.get("forced_views", 0) for r in ds.shards)
    report["bad_shards"] = {}
    if verify:
        for r in ds.shards:
            problem = ds.verify(r)
            if problem:
                report["bad_shards"][r["name"]] = problem
    good = [r for r in ds.shards if r["name"] not in report["bad_shards"]]
    max_m = float(ds.manifest["depth"]["max_m"])
    edges = np.concatenate([[0], np.geomspace(0.25, max_m, 12)])
    hist = np.zeros(len(edges) - 1, np.int64)
    lo, hi, invalid, px = np.inf, 0.0, 0, 0
    things, families, seen = [], {}, 0
    try:
        for s in ds.iter_samples(good, verify=False):  # `good` was verified above when asked
            valid = s.depth > 0
            px += s.depth.size
            invalid += int((~valid).sum())
            if valid.any():
                d = s.depth[valid]
                lo, hi = min(lo, float(d.min())), max(hi, float(d.max()))
                hist += np.histogram(d, bins=edges)[0]
            things.append(sum(1 for i in s.meta.get("instances", []) if i.get("thing")))
            fam = s.meta.get("scene_family", "?")
            families[fam] = families.get(fam, 0) + 1
            seen += 1
            if max_samples and seen >= max_samples:
                break
    except ShardError as e:
        report["bad_shards"]["read"] = str(e)
    report["samples_read"] = seen
    report["families"] = families
    report["depth_m"] = {"min": lo if seen else None, "max": hi if seen else None,
                         "invalid_fraction": invalid / px if px else None,
                         "histogram": {f"{a:.2f}-{b:.2f}": int(c) for a, b, c in zip(edges[:-1], edges[1:], hist)}}
    report["things_per_image"] = ({"mean": float(np.mean(things)), "min": int(np.min(things)),
                                   "max": int(np.max(things))} if things else None)
    return report


def _describe_config(c: dict[str, Any]) -> str:
    """One line: the render options of a `simgen render` dataset, or whatever another writer recorded."""
    if "intrinsics" in c and "scene" in c:
        return (f"scene={c['scene']} camera={c['camera']} {c['intrinsics']['width']}x{c['intrinsics']['height']} "
                f"profile={c.get('profile')} views/scene={c.get('views_per_scene')}")
    return " ".join(f"{k}={v}" for k, v in sorted(c.items())) or "(none recorded)"


def format_report(r: dict[str, Any]) -> str:
    requested = "an unfinished count" if r["requested"] is None else r["requested"]
    lines = [
        f"dataset   {r['root']}",
        f"samples   {r['samples']} committed of {requested} requested, in {r['shards']} shards",
        f"config    {_describe_config(r['config'])} seed={r['seed']}",
        "families  " + ", ".join(f"{k}: {v}" for k, v in sorted(r["families"].items())),
    ]
    d = r["depth_m"]
    if d["min"] is not None:
        lines.append(f"depth     {d['min']:.2f} - {d['max']:.2f} m, invalid {100 * d['invalid_fraction']:.1f}% of pixels "
                     f"(scale {r['depth_scale']:g} units/m)")
        total = sum(d["histogram"].values()) or 1
        for band, count in d["histogram"].items():
            lines.append(f"  {band:>13} m {'#' * round(40 * count / total):<40} {100 * count / total:5.1f}%")
    if r["things_per_image"]:
        t = r["things_per_image"]
        lines.append(f"objects   {t['mean']:.1f} things per image (min {t['min']}, max {t['max']})")
    rej = r["rejected_views"]
    lines.append("rejected  " + (", ".join(f"{k}: {v}" for k, v in sorted(rej.items())) if rej else "none")
                 + (f"; {r['forced_views']} views kept after all attempts failed" if r["forced_views"] else ""))
    if r["samples_read"] < r["samples"] and not r["bad_shards"]:
        lines.append(f"statistics from {r['samples_read']} of {r['samples']} samples (--max-samples)")
    if r["bad_shards"]:
        lines.append("CHECKSUMS FAILED: " + "; ".join(f"{k}: {v}" for k, v in r["bad_shards"].items()))
        lines.append(f"statistics from the {r['samples_read']} readable samples of {r['samples']}. Repair: rerun the "
                     f"`simgen render --out {r['root']} --n {r['requested']} --seed {r['seed']} ...` command that made "
                     "it, with the same options: it renders the damaged shards again")
    else:
        lines.append(f"checksums ok ({r['shards']} shards verified)")
    return "\n".join(lines)
