"""The real-data experiment's bookkeeping (scripts/experiment_indoor.py): results.json entries,
seed statistics and the targets check, on a made-up table (no training)."""

import importlib.util
import sys
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location("experiment_indoor",
                                              Path(__file__).resolve().parents[1] / "scripts" / "experiment_indoor.py")
exp = importlib.util.module_from_spec(SPEC)
sys.modules["experiment_indoor"] = exp  # dataclasses look their module up there
SPEC.loader.exec_module(exp)


def _row(abs_rel, rmse, a1, med):
    metrics = lambda ar, r, a: {"overall": {"abs_rel": ar, "rmse": r, "a1": a}, "per_scene": {}}
    return {"eval": {"none": metrics(abs_rel, rmse, a1), "median": metrics(med, rmse, a1)}, "params": 1, "macs": 1}


def _table():
    rows = {"teacher": ("teacher", _row(0.20, 0.60, 0.70, 0.30)),
            "b0": ("b", _row(0.21, 0.62, 0.68, 0.20)), "b1": ("b-s1", _row(0.21, 0.62, 0.68, 0.20)),
            "c0": ("c", _row(0.40, 0.90, 0.40, 0.30)), "c1": ("c-s1", _row(0.42, 0.92, 0.42, 0.30)),
            "c2": ("c-s2", _row(0.38, 0.88, 0.38, 0.30)),
            "f0": ("f", _row(0.30, 0.66, 0.55, 0.25)), "f1": ("f-s1", _row(0.31, 0.67, 0.56, 0.25)),
            "f2": ("f-s2", _row(0.29, 0.65, 0.54, 0.25)), "g": ("g", _row(0.41, 0.90, 0.40, 0.30))}
    table = {split: {label: row for label, (_, row) in rows.items()} for split in ("test", "unseen")}
    return table, {label: rid for label, (rid, _) in rows.items()}


def test_results_json_has_one_entry_per_row_seed_split_and_alignment():
    table, ids = _table()
    entries = exp.result_entries(table, ids)
    assert len(entries) == 10 * 2 * 2
    e = next(e for e in entries if e["run"] == "f-s2" and e["split"] == "unseen" and e["align"] == "median")
    assert (e["id"], e["seed"], e["abs_rel"]) == ("f", 2, 0.25)
    assert set(e) == {"id", "run", "label", "seed", "split", "align", "abs_rel", "rmse", "a1"}


def test_seed_stats_and_targets():
    table, ids = _table()
    entries = exp.result_entries(table, ids)
    mean, spread, n = exp.seed_stats(entries, "test", "none", "abs_rel")["c"]
    assert n == 3 and mean == pytest.approx(0.40) and spread == pytest.approx(0.02)
    test = "\n".join(exp.target_lines(entries, "test"))
    assert "f against c, abs_rel" in test and "missed" not in test.split("f's RMSE")[0], test
    assert "f/b = 1.065: met" in test  # within 10% of b on test
    assert "b reaches its teacher" in test and "AbsRel b/teacher = 1.050" in test
    unseen = "\n".join(exp.target_lines(entries, "unseen"))
    assert "f/b = 1.065: missed" in unseen  # at or below b's on unseen
    assert "below the teacher's: 0.250 against 0.300: met" in unseen
    assert "(g) matches c: AbsRel 0.410 against 0.400 +- 0.020: met" in unseen
    assert len(exp.seed_table(entries, "test")) == 2 + 3  # header + b, c, f
    one_seed = [e for e in entries if e["seed"] == 0]
    assert "f against c, abs_rel: 0.300 +- 0.000 against 0.400 +- 0.000: not judged" in \
        "\n".join(exp.target_lines(one_seed, "test"))


def test_targets_at_the_long_schedule_read_the_long_rows():
    def at_long_schedule(run_id):  # "b-s1" -> "v21-s1"
        base, dash, seed = run_id.partition("-")
        return exp.LONG_IDS.get(base, base) + dash + seed

    table, ids = _table()
    entries = exp.result_entries(table, {label: at_long_schedule(rid) for label, rid in ids.items()})
    assert exp.target_lines(entries, "test") == []  # no b, c, f at the base schedule
    long = "\n".join(exp.all_target_lines(entries, "test"))
    assert "v22 against v19, abs_rel: 0.300 +- 0.010 against 0.400 +- 0.020: met" in long
    assert "v22/v21 = 1.065: met" in long and "v21 reaches its teacher" in long and "(g)" not in long


def test_targets_at_each_end_point_read_that_forms_rows():
    """END_POINT_IDS: the same table played by v49-v51 and v56 (teacher BN) is checked under its own
    heading, g included; nothing is reported for the batch-BN end point, whose rows are absent."""
    roles = exp.END_POINT_IDS["End point, teacher BN"]
    assert roles == {"b": "v51", "c": "v50", "f": "v49", "g": "v56"}

    def as_end_point(run_id):  # "f-s1" -> "v49-s1"
        base, dash, seed = run_id.partition("-")
        return roles[base] + dash + seed if base in roles else run_id

    table, ids = _table()
    entries = exp.result_entries(table, {label: as_end_point(rid) for label, rid in ids.items()})
    lines = "\n".join(exp.all_target_lines(entries, "unseen"))
    assert "End point, teacher BN (b as v51, c as v50, f as v49, g as v56):" in lines
    assert "batch BN" not in lines and exp.target_lines(entries, "unseen") == []
    assert "v49 against v50, abs_rel: 0.300 +- 0.010 against 0.400 +- 0.020: met" in lines
    assert "v49/v51 = 1.065: missed" in lines  # unseen: at or below b's
    assert "1/6 of the sims (v56) matches v50: AbsRel 0.410 against 0.400 +- 0.020: met" in lines
    worse, better = ([{**e, "abs_rel": e["abs_rel"] + shift} if e["run"] == "v56" else e for e in entries]
                     for shift in (0.05, -0.2))  # g 0.46 and 0.21 against c's 0.40 +- 0.02
    assert "(v56) matches v50: AbsRel 0.460 against 0.400 +- 0.020: missed" in "\n".join(exp.all_target_lines(worse, "unseen"))
    assert "(v56) matches v50: AbsRel 0.210 against 0.400 +- 0.020: met" in "\n".join(exp.all_target_lines(better, "unseen"))


def test_end_point_roles_are_the_rows_they_stand_for():
    """Each end point's b, c, f, g are rows of one form: f = c + the method, b = c on real images,
    g = f on a sixth of the sims."""
    rows = {r.id: r for r in exp.ROWS + exp.VARIANTS}
    for roles in exp.END_POINT_IDS.values():
        b, c, f, g = (rows[roles[k]] for k in "bcfg")
        assert (b.images, c.images, f.images, g.images) == ("real", "sims", "sims", "sims-sixth")
        assert b.overrides == c.overrides and f.overrides == g.overrides == {**c.overrides, **exp.METHOD}


def test_rows_run_three_seeds_of_b_c_and_f():
    ids = [r.id for r in exp.ROWS]
    for key in ("b", "c", "f"):
        assert [i for i in ids if i.split("-")[0] == key] == [key, f"{key}-s1", f"{key}-s2"]
    assert next(r for r in exp.ROWS if r.id == "c-s2").overrides["seed"] == 2


def test_rows_and_seeds_select_what_runs():
    import argparse

    ap = argparse.ArgumentParser()
    rows, with_a = exp.select_rows(exp.ROWS + exp.VARIANTS, "c,f,v11", "0", ap)
    assert [r.id for r in rows] == ["c", "f", "v11"] and not with_a
    rows, _ = exp.select_rows(exp.ROWS, "b", "1,2", ap)
    assert [r.id for r in rows] == ["b-s1", "b-s2"]
    rows, with_a = exp.select_rows(exp.ROWS, None, "0", ap)
    assert with_a and "c-s1" not in [r.id for r in rows] and "g" in [r.id for r in rows]
    for bad in (("zz", "0"), ("c", "x")):
        with pytest.raises(SystemExit):
            exp.select_rows(exp.ROWS, *bad, ap)


def test_report_only_tables_the_finished_runs_and_names_the_rest(tmp_path):
    import argparse

    rows, _ = exp.select_rows(exp.ROWS + exp.VARIANTS, "v19,v26", "0,1,2", argparse.ArgumentParser())
    for run_id, name in (("v19", exp.FINAL), ("v19-s1", exp.FINAL), ("v26", exp.FINAL), ("v26-s1", exp.CHECKPOINT)):
        (tmp_path / f"run-{run_id}").mkdir()
        (tmp_path / f"run-{run_id}" / name).write_bytes(b"x")
    done, left = exp.finished_rows(rows, tmp_path)
    assert [r.id for r in done] == ["v19", "v19-s1", "v26"]
    assert [r.id for r in left] == ["v19-s2", "v26-s1", "v26-s2"]  # unfinished (checkpoint only) or not started


def test_derived_datasets_keep_or_change_the_samples(tmp_path):
    import numpy as np

    from conftest import make_sample
    from simgen import shards

    src = tmp_path / "src"
    with shards.DatasetWriter(src, depth_scale=1000.0, max_depth_m=10.0, samples_per_shard=2, config={"k": 1},
                              seed=0, generator="test") as writer:
        for i in range(5):
            writer.add(make_sample(i, h=16, w=16))
    first = exp.first_samples(src, tmp_path / "first", 3)
    kept = list(shards.DatasetReader(first).iter_samples())
    assert [s.index for s in kept] == [0, 1, 2]
    assert all(np.array_equal(a.rgb, make_sample(i, h=16, w=16).rgb) for i, a in enumerate(kept))
    assert all(np.array_equal(a.inst, b.inst) for a, b in zip(kept, shards.DatasetReader(src).iter_samples()))
    mtime = (first / "manifest.json").stat().st_mtime
    assert exp.first_samples(src, first, 3) == first and (first / "manifest.json").stat().st_mtime == mtime  # reused
    shuffled = list(shards.DatasetReader(exp.patch_shuffled(src, tmp_path / "shuffled")).iter_samples())
    assert len(shuffled) == 5
    original = make_sample(0, h=16, w=16).rgb
    assert not np.array_equal(shuffled[0].rgb, original)  # patches moved
    assert np.array_equal(np.sort(shuffled[0].rgb.reshape(-1)), np.sort(original.reshape(-1)))  # same pixels


def test_long_schedule_tries_differ_from_their_rows_only_in_steps():
    """v19, v21, v22 (LONG_IDS, which the long targets read) compare end points with c, b, f: same images
    and settings, 4x the steps, every seed."""
    rows = {r.id: r for r in exp.ROWS + exp.VARIANTS}
    assert exp.LONG_IDS == {"b": "v21", "c": "v19", "f": "v22"}
    for short, long in exp.LONG_IDS.items():
        for suffix in ("", "-s1", "-s2"):
            a, b = rows[long + suffix], rows[short + suffix]
            assert a.images == b.images
            assert {k: v for k, v in a.overrides.items() if k != "steps"} == b.overrides
            assert a.overrides["steps"] == exp.PROFILES["long"].steps == 4 * exp.PROFILES["cpu"].steps


def test_frozen_t_tries_differ_from_f_only_in_t_schedule_and_steps():
    """v24/v25: f with T learning over the first quarter of the steps, at the cpu and long schedules."""
    rows = {r.id: r for r in exp.ROWS + exp.VARIANTS}
    for tried, profile in (("v24", "cpu"), ("v25", "long")):
        for suffix in ("", "-s1", "-s2"):
            a, f = rows[tried + suffix], rows["f" + suffix]
            assert a.images == f.images
            assert {k: v for k, v in a.overrides.items() if k not in ("steps", "transform_until")} == f.overrides
            assert a.overrides["steps"] == exp.PROFILES[profile].steps == 4 * a.overrides["transform_until"]


def test_more_sims_tries_differ_from_their_rows_only_in_images():
    """v43/v44: v42 (f) and v34 (c) on three times the distinct sims; v45: v34 on as many other sims;
    v46/v47: v35 (f) and v34 (c) on sims of the train scenes' room types."""
    rows = {r.id: r for r in exp.ROWS + exp.VARIANTS}
    for tried, base, images in (("v43", "v42", "sims-x3"), ("v44", "v34", "sims-x3"), ("v45", "v34", "sims-other"),
                                ("v46", "v35", "sims-rooms"), ("v47", "v34", "sims-rooms")):
        for suffix in ("", "-s1", "-s2"):
            a, b = rows[tried + suffix], rows[base + suffix]
            assert (a.images, b.images) == (images, "sims")
            assert a.overrides == b.overrides


def test_teacher_bn_tries_differ_from_their_rows_only_in_the_students_bn():
    """v48-v51: v32 (c, 1000 steps), v35 (f), v34 (c) and v36 (b) with --student-bn teacher, on the same images."""
    rows = {r.id: r for r in exp.ROWS + exp.VARIANTS}
    for tried, base in (("v48", "v32"), ("v49", "v35"), ("v50", "v34"), ("v51", "v36")):
        for suffix in ("", "-s1", "-s2"):
            a, b = rows[tried + suffix], rows[base + suffix]
            assert a.images == b.images == ("real" if base == "v36" else "sims")
            assert a.overrides == {**b.overrides, "student_bn": "teacher"} and "student_bn" not in b.overrides


def test_encoder_bn_tries_differ_from_their_rows_only_in_the_students_bn():
    """v52/v53: v35 (f) and v34 (c) with --student-bn encoder, on the same sims."""
    rows = {r.id: r for r in exp.ROWS + exp.VARIANTS}
    for tried, base in (("v52", "v35"), ("v53", "v34")):
        for suffix in ("", "-s1", "-s2"):
            a, b = rows[tried + suffix], rows[base + suffix]
            assert a.images == b.images == "sims"
            assert a.overrides == {**b.overrides, "student_bn": "encoder"} and "student_bn" not in b.overrides


def test_end_point_rows_are_the_tables_rows_in_the_teacher_bn_form():
    """v54-v57: the table's rows d, e, g and h with v49's student (from the teacher, hints, 4000 steps,
    --student-bn teacher), on the same images as those rows; f's and c's differences from v49 and v50 are
    the table's own (d: mixing without T, e: T without mixing)."""
    rows = {r.id: r for r in exp.ROWS + exp.VARIANTS}
    v49, v50 = rows["v49"].overrides, rows["v50"].overrides  # f and c in that form: the same but the method
    assert {**v50, **exp.METHOD} == v49
    for tried, base in (("v54", "d"), ("v55", "e"), ("v56", "g"), ("v57", "h")):
        row, table_row = rows[tried], rows[base]
        assert row.images == table_row.images
        assert row.overrides == {**v50, **table_row.overrides}
        assert row.overrides["student_bn"] == "teacher" and row.overrides["steps"] == exp.LONG_STEPS


def test_room_sims_are_rendered_from_the_target_rooms_only(monkeypatch, tmp_path):
    """sims-rooms: as many renders as `sims`, of TARGET_ROOMS only; `sims` keeps the default room mix,
    and image sets no row asks for are not rendered."""
    calls = {}
    monkeypatch.setattr(exp, "render", lambda out, cfg, seed, n, **kw: calls.setdefault(out.name, (cfg.rooms, seed, n)))
    monkeypatch.setattr(exp, "patch_shuffled", lambda src, out: out)
    monkeypatch.setattr(exp, "real_train_list", lambda data, out: out)
    p = exp.PROFILES["smoke"]
    images = exp.prepare_images(p, tmp_path, tmp_path, {"sims", "sims-rooms"}, show=False)
    assert images["sims-rooms"] == [tmp_path / "sims-rooms"]
    assert calls["sims-rooms"] == (list(exp.TARGET_ROOMS), 0, p.n_sim)
    assert calls["sims"] == ([], 0, p.n_sim)
    assert "sims-more" not in calls and "sims-tabletop" not in calls


def test_every_row_makes_a_valid_train_config():
    """A row whose overrides the trainer refuses would fail only when its turn comes in a long run."""
    from dataclasses import replace

    from distill.train import TrainConfig

    base = TrainConfig(steps=exp.PROFILES["cpu"].steps)
    for row in exp.ROWS + exp.VARIANTS:  # with the kind of data train_row gives it (some terms need renders)
        data = {"images": ["real.txt"]} if row.images == "real" else {"shards": ["sims"]}
        cfg = replace(base, **data, **row.overrides)
        assert cfg.steps >= 1, row.id
