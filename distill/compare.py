"""Comparing models: metrics without and with alignment, size and CPU latency, markdown tables.

Used by `scripts/demo.py` and `scripts/experiment_indoor.py` (one implementation of the tables
the docs show).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill.checkpoint import load_model
from distill.evaluate import EvalConfig, evaluate_alignments, grid_row, predict, stack_rows
from distill.latency import eager_ms
from distill.networks import count_macs, count_params
from simgen.options import Size

def cpu_latency_ms(model: torch.nn.Module, input_size: Size) -> float:
    """PyTorch eager fp32 at batch 1 (distill/latency.py)."""
    return eager_ms(model, input_size)


def measure_model(path: str | Path, data: str | Path, input_size: Size, protocol: str, split: str | None,
                  alignments: tuple[str, ...] = ("none", "median"), grid_path: Path | None = None,
                  latency: bool = True) -> dict[str, Any]:
    """Metrics of a model file under each alignment (overall and per scene), its parameters and
    MACs, and its CPU latency. The grid picture is drawn for the first alignment."""
    device = torch.device("cpu")
    model, _ = load_model(path, device)
    results = evaluate_alignments(model, data, input_size, device, tuple(alignments), protocol=protocol, split=split,
                                  grid_path=grid_path)
    evals = {align: {"overall": r["overall"], "per_scene": r["per_scene"]} for align, r in results.items()}
    row = {"eval": evals, "params": count_params(model), "macs": count_macs(model, input_size.hw)}
    if latency:
        row["cpu_ms"] = cpu_latency_ms(model, input_size)
    return row


@torch.no_grad()
def comparison_grid(models: dict[str, str | Path], data: str | Path, input_size: Size, path: str | Path,
                    count: int = 6) -> None:
    """One picture of the same frames for several models: RGB | ground truth | each model's depth |
    the last model's relative error, one row per frame, the models' names on top."""
    from PIL import Image, ImageDraw

    from distill.data import RGBDFolder
    from distill.layers import eval_mask

    loaded = [load_model(p)[0] for p in models.values()]
    ds = RGBDFolder(data, depth_scale=EvalConfig.depth_scale)
    rows = []
    for i in np.linspace(0, len(ds) - 1, min(count, len(ds))).round().astype(int):
        item = ds[int(i)]
        gt = item["depth"][0]
        preds = [predict(m, item["rgb"][None], input_size)[0, 0] for m in loaded]
        rows.append(grid_row(item["rgb"], gt, preds, eval_mask(gt, "none")))
    sheet = stack_rows(rows)
    head = 14
    canvas = Image.new("RGB", (sheet.width, sheet.height + head), "white")
    canvas.paste(sheet, (0, head))
    draw, tile = ImageDraw.Draw(canvas), sheet.width // (len(loaded) + 3)
    names = ["RGB", "ground truth", *models, f"error of {list(models)[-1]}"]
    for k, name in enumerate(names):
        draw.text((k * tile + 3, 1), name[: tile // 6], fill="black")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def prediction_figure(models: dict[str, Path], data: Path, size: Size, path: Path, split: str = "test",
                      per_scene: int = 2) -> list[str]:
    """Depth predicted by every model on the same frames of a split (rows), one column per model.

    Predictions only: the frames and their ground truth belong to the data set, which stays out of
    the project (the names are returned; `grid-*.png` under --out show RGB and ground truth).
    Each row's colours span the teacher's 2nd-98th percentile, near bright, far dark."""
    from PIL import Image, ImageDraw

    from distill.data import RGBDFolder
    from simgen.preview import colorize_depth

    ds = RGBDFolder(data, 1000.0, split)
    scenes = sorted({ds.items[i]["scene"] for i in range(len(ds))})
    picks = []
    for sc in scenes:
        idx = [i for i in range(len(ds)) if ds.items[i]["scene"] == sc]
        picks += [idx[int(k)] for k in np.linspace(0, len(idx) - 1, per_scene + 2)[1:-1].round()]
    loaded = {name: load_model(p)[0] for name, p in models.items()}
    tile_h, tile_w, head = 120, 160, 16
    canvas = Image.new("RGB", (tile_w * len(loaded), head + tile_h * len(picks)), "white")
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(loaded):
        draw.text((c * tile_w + 4, 2), name[:24], fill="black")
    for r, i in enumerate(picks):
        rgb = ds[i]["rgb"][None]
        preds = {name: predict(m, rgb, size)[0, 0].numpy() for name, m in loaded.items()}
        lo, hi = np.percentile(next(iter(preds.values())), [2, 98])
        for c, pred in enumerate(preds.values()):
            tile = Image.fromarray(colorize_depth(np.clip(pred, lo, hi), lo, hi)).resize((tile_w, tile_h))
            canvas.paste(tile, (c * tile_w, head + r * tile_h))
    canvas.save(path)
    return [f"{ds.items[i]['scene']}/{ds.items[i]['name']}" for i in picks]


def metrics_table(rows: dict[str, dict[str, Any]], columns: tuple[tuple[str, str, str], ...] = (
        ("none", "abs_rel", "AbsRel"), ("none", "rmse", "RMSE"), ("none", "a1", "delta1"),
        ("median", "abs_rel", "AbsRel (median)"), ("median", "rmse", "RMSE (median)"),
        ("median", "a1", "delta1 (median)"))) -> list[str]:
    """Markdown lines: one row per model, the chosen (alignment, metric) columns, then parameters,
    GMACs and CPU ms where measured."""
    latency = all("cpu_ms" in v for v in rows.values())
    head = ["model"] + [title for _, _, title in columns] + ["params (M)", "GMACs"] + (["CPU ms"] if latency else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, v in rows.items():
        cells = [name] + [f"{v['eval'][align]['overall'][metric]:.3f}" for align, metric, _ in columns]
        cells += [f"{v['params'] / 1e6:.2f}", f"{v['macs'] / 1e9:.3f}"] + ([f"{v['cpu_ms']:.1f}"] if latency else [])
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def per_scene_table(rows: dict[str, dict[str, Any]], metric: str = "abs_rel", align: str = "none") -> list[str]:
    """Markdown lines: one row per model, one column per scene."""
    scenes = sorted(next(iter(rows.values()))["eval"][align]["per_scene"])
    lines = ["| model | " + " | ".join(scenes) + " |", "|---|" + "---|" * len(scenes)]
    for name, v in rows.items():
        ps = v["eval"][align]["per_scene"]
        lines.append(f"| {name} | " + " | ".join(f"{ps[s][metric]:.3f}" for s in scenes) + " |")
    return lines


# ------------------------------------------------------------------------- seeds and targets
# Entries are flat result rows: {"id", "run", "seed", "split", "align", "abs_rel", "rmse", "a1", ...}, one
# per model, training seed, split and alignment (the experiment's results.json).

# the real-data targets: f within this factor of b's RMSE on the teacher's rooms (test)
F_RMSE_OVER_B = 1.10


def seed_stats(entries: list[dict], split: str, align: str, metric: str) -> dict[str, tuple[float, float, int]]:
    """{row id: (mean, spread, seeds)} over seeds; spread = sample standard deviation (0 for one seed)."""
    groups: dict[str, list[float]] = {}
    for e in entries:
        if e["split"] == split and e["align"] == align:
            groups.setdefault(e["id"], []).append(e[metric])
    return {k: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v)) for k, v in groups.items()}


def seed_table(entries: list[dict], split: str) -> list[str]:
    """Markdown: mean +- spread of every row with more than one seed."""
    cols = [("none", "abs_rel"), ("none", "rmse"), ("none", "a1"), ("median", "abs_rel")]
    stats = {c: seed_stats(entries, split, *c) for c in cols}
    multi = [k for k, (_, _, n) in stats[cols[0]].items() if n > 1]
    lines = ["| row (seeds) | AbsRel | RMSE | delta1 | AbsRel (median) |", "|---|---|---|---|---|"]
    for k in multi:
        cells = [f"{stats[c][k][0]:.3f} +- {stats[c][k][1]:.3f}" for c in cols]
        lines.append(f"| {k} ({stats[cols[0]][k][2]}) | " + " | ".join(cells) + " |")
    return lines


def _method_beats_plain_kd(none: dict, f: str, c: str) -> list[str]:
    """f beats c by more than either's seed spread, metric by metric."""
    lines = []
    for m, better in (("abs_rel", -1), ("rmse", -1), ("a1", 1)):
        (fm, fs, fn), (cm, cs, cn) = none[m][f], none[m][c]
        gain = (fm - cm) * better
        verdict = "not judged: one seed, no spread" if min(fn, cn) < 2 else "met" if gain > max(fs, cs) else "missed"
        lines.append(f"- {f} against {c}, {m}: {fm:.3f} +- {fs:.3f} against {cm:.3f} +- {cs:.3f}: {verdict} "
                     f"(gain {gain:+.3f}, spreads {fs:.3f} / {cs:.3f})")
    return lines


def target_lines(entries: list[dict], split: str, roles: dict[str, str]) -> list[str]:
    """The real-data targets on one split for the rows that play b (KD on real images), c (KD on raw sims),
    f (the method) and g (f on a sixth of the sims), where those rows were run."""
    b, c, f, g = roles["b"], roles["c"], roles["f"], roles.get("g")
    none = {m: seed_stats(entries, split, "none", m) for m in ("abs_rel", "rmse", "a1")}
    med = seed_stats(entries, split, "median", "abs_rel")
    lines = _method_beats_plain_kd(none, f, c) if f in none["abs_rel"] and c in none["abs_rel"] else []
    if f in none["rmse"] and b in none["rmse"]:
        ratio = none["rmse"][f][0] / none["rmse"][b][0]
        unseen = split == "unseen"
        rule = f"at or below {b}'s" if unseen else f"within {F_RMSE_OVER_B - 1:.0%} of {b}'s"
        ok = ratio <= (1.0 if unseen else F_RMSE_OVER_B)
        lines.append(f"- {f}'s RMSE {rule}: {f}/{b} = {ratio:.3f}: " + ("met" if ok else "missed"))
    if split == "unseen" and f in med and "teacher" in med:
        fm, tm = med[f][0], med["teacher"][0]
        lines.append(f"- {f}'s median-aligned AbsRel below the teacher's: {fm:.3f} against {tm:.3f}: "
                     + ("met" if fm < tm else "missed"))
    if split == "test" and b in none["abs_rel"] and "teacher" in none["abs_rel"]:
        ra = none["abs_rel"][b][0] / none["abs_rel"]["teacher"][0]
        rr = none["rmse"][b][0] / none["rmse"]["teacher"][0]
        lines.append(f"- {b} reaches its teacher (within 10%): AbsRel {b}/teacher = {ra:.3f}, RMSE {rr:.3f}: "
                     + ("met" if max(ra, rr) <= 1.10 else "missed: the schedule is too short to compare end points"))
    if g in none["abs_rel"] and c in none["abs_rel"]:
        # matched: no worse than c by more than c's spread (a g that beats c has matched it)
        (gm, _, _), (cm, cs, _) = none["abs_rel"][g], none["abs_rel"][c]
        lines.append(f"- 1/6 of the sims ({g}) matches {c}: AbsRel {gm:.3f} against {cm:.3f} +- {cs:.3f}: "
                     + ("met" if gm - cm <= max(cs, 1e-9) else "missed"))
    return lines


def result_entries(table: dict[str, dict[str, dict]]) -> list[dict]:
    """results.json rows: one per model, seed, split and alignment."""
    entries = []
    for split, rows in table.items():
        for run, row in rows.items():
            base, _, seed = run.partition("-s")
            for align, ev in row["eval"].items():
                m = ev["overall"]
                entries.append({"id": base, "run": run, "seed": int(seed or 0), "split": split, "align": align,
                                "abs_rel": m["abs_rel"], "rmse": m["rmse"], "a1": m["a1"]})
    return entries


def table_target_lines(entries: list[dict], split: str, tables: dict[str, dict[str, str]]) -> list[str]:
    """The targets of every table (name: {role: row}) whose rows were run, under the table's name."""
    lines = []
    for name, roles in tables.items():
        more = target_lines(entries, split, roles)
        if more:
            lines += [f"{name} ({', '.join(f'{k} as {v}' for k, v in roles.items())}):", "", *more, ""]
    return lines
