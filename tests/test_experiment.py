"""The real-data experiment (scripts/experiment_indoor.py): its rows as config files, the seed statistics
and targets (distill/compare.py), the derived datasets (simgen/derive.py)."""

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SIZE, make_sample
from distill.compare import result_entries, seed_stats, seed_table, table_target_lines, target_lines
from simgen import dataset
from simgen.derive import first_samples, patch_shuffled

SPEC = importlib.util.spec_from_file_location("experiment_indoor",
                                              Path(__file__).resolve().parents[1] / "scripts" / "experiment_indoor.py")
exp = importlib.util.module_from_spec(SPEC)
sys.modules["experiment_indoor"] = exp  # dataclasses look their module up there
SPEC.loader.exec_module(exp)


@pytest.mark.parametrize("row", sorted(exp.load_rows()))
def test_every_row_file_validates_and_runs_two_steps(row, tmp_path, synthetic_shards, teacher_file):
    """Each experiments/IMAGES/ROW.json is a `--config` file of TrainConfig overrides: it loads (no unknown or
    retired field) and trains two steps on the kind of data the driver gives it, with the ResNet-18 teacher the
    experiment fits (a row that starts from the teacher needs one)."""
    from distill.config import TrainConfig
    from distill.train import train

    r = exp.load_rows()[row]
    assert r.images in ("sims", "sims-sixth", "real", "no-scene") and row in exp.LABELS
    data = {"images": [str(tmp_path / "real.txt")], "shards": []} if r.images == "real" else \
        {"shards": [str(synthetic_shards)]}
    if r.images == "real":  # the real train images as the driver lists them: here the synthetic ones as PNGs
        (tmp_path / "real.txt").write_text("".join(f"{_png(tmp_path, i)}\n" for i in range(8)))
    cfg = TrainConfig(**{**r.overrides, **data, "steps": 2, "warmup": 1, "batch_size": 4, "workers": 0,
                         "device": "cpu", "out": str(tmp_path / "run"),
                         "teacher": {"source": str(teacher_file), "input_size": SIZE}})
    assert train(cfg, show_progress=False)["steps"] == 2


def _png(tmp_path: Path, i: int) -> Path:
    from PIL import Image

    path = tmp_path / f"real-{i}.png"
    Image.fromarray(make_sample(i, h=32, w=64).rgb).save(path)
    return path


def test_every_table_names_rows_that_exist():
    rows = exp.load_rows()
    for name, roles in exp.TABLES.items():
        assert {"b", "c", "f"} <= set(roles) and set(roles.values()) <= set(rows), name


def test_rows_and_seeds_select_what_runs():
    ap = argparse.ArgumentParser()
    rows, with_a = exp.select_rows("c,f,v49", "0", ap)
    assert [r.run for r in rows] == ["c", "f", "v49"] and not with_a
    assert rows[2].overrides["student_bn"] == "teacher" and rows[2].images == "sims"
    rows, with_a = exp.select_rows("a,b", "1,2", ap)
    assert [r.run for r in rows] == ["b-s1", "b-s2"] and [r.seed for r in rows] == [1, 2] and with_a
    for bad in (("zz", "0"), ("c", "x")):
        with pytest.raises(SystemExit):
            exp.select_rows(*bad, ap)


def test_report_only_tables_the_finished_runs_and_names_the_rest(tmp_path, capsys):
    rows, _ = exp.select_rows("v19", "0,1,2", argparse.ArgumentParser())
    (tmp_path / exp.TEACHER_FILE).write_bytes(b"x")
    for run, name in (("v19", exp.FINAL), ("v19-s1", exp.CHECKPOINT)):
        (tmp_path / f"run-{run}").mkdir()
        (tmp_path / f"run-{run}" / name).write_bytes(b"x")
    assert list(exp.finished_models(tmp_path, rows, with_a=False)) == ["teacher", "v19"]
    assert "left out: v19-s1, v19-s2" in capsys.readouterr().out


def _row(abs_rel, rmse, a1, med):
    metrics = lambda ar, r, a: {"overall": {"abs_rel": ar, "rmse": r, "a1": a}, "per_scene": {}}  # noqa: E731
    return {"eval": {"none": metrics(abs_rel, rmse, a1), "median": metrics(med, rmse, a1)}, "params": 1, "macs": 1}


def _entries():
    runs = {"teacher": _row(0.20, 0.60, 0.70, 0.30), "b": _row(0.21, 0.62, 0.68, 0.20),
            "b-s1": _row(0.21, 0.62, 0.68, 0.20), "c": _row(0.40, 0.90, 0.40, 0.30), "c-s1": _row(0.42, 0.92, 0.42, 0.30),
            "c-s2": _row(0.38, 0.88, 0.38, 0.30), "f": _row(0.30, 0.66, 0.55, 0.25), "f-s1": _row(0.31, 0.67, 0.56, 0.25),
            "f-s2": _row(0.29, 0.65, 0.54, 0.25), "g": _row(0.41, 0.90, 0.40, 0.30)}
    return result_entries({split: runs for split in ("test", "unseen")})


def test_results_json_has_one_entry_per_run_split_and_alignment():
    entries = _entries()
    assert len(entries) == 10 * 2 * 2
    e = next(e for e in entries if e["run"] == "f-s2" and e["split"] == "unseen" and e["align"] == "median")
    assert (e["id"], e["seed"], e["abs_rel"]) == ("f", 2, 0.25)


def test_seed_stats_and_targets():
    entries, roles = _entries(), {"b": "b", "c": "c", "f": "f", "g": "g"}
    mean, spread, n = seed_stats(entries, "test", "none", "abs_rel")["c"]
    assert n == 3 and mean == pytest.approx(0.40) and spread == pytest.approx(0.02)
    test = "\n".join(target_lines(entries, "test", roles))
    assert "f against c, abs_rel" in test and "missed" not in test.split("f's RMSE")[0], test
    assert "f/b = 1.065: met" in test  # within 10% of b on test
    assert "b reaches its teacher" in test and "AbsRel b/teacher = 1.050" in test
    unseen = "\n".join(target_lines(entries, "unseen", roles))
    assert "f/b = 1.065: missed" in unseen  # at or below b's on unseen
    assert "below the teacher's: 0.250 against 0.300: met" in unseen
    assert "(g) matches c: AbsRel 0.410 against 0.400 +- 0.020: met" in unseen
    beaten = [e for e in entries if e["run"] != "g"] + [dict(e, abs_rel=0.45) for e in entries if e["run"] == "g"]
    assert "(g) matches c: AbsRel 0.450 against 0.400 +- 0.020: missed" in "\n".join(target_lines(beaten, "test", roles))
    assert len(seed_table(entries, "test")) == 2 + 3  # header + b, c, f
    one_seed = [e for e in entries if e["seed"] == 0]
    assert "f against c, abs_rel: 0.300 +- 0.000 against 0.400 +- 0.000: not judged" in \
        "\n".join(target_lines(one_seed, "test", roles))


def test_derived_datasets_keep_or_change_the_samples(tmp_path):
    src = tmp_path / "src"
    with dataset.DatasetWriter(src, depth_scale=1000.0, max_depth_m=10.0, samples_per_shard=2, config={"k": 1},
                              seed=0, generator="test") as writer:
        for i in range(5):
            writer.add(make_sample(i, h=16, w=16))
    first = first_samples(src, tmp_path / "first", 3)
    kept = list(dataset.DatasetReader(first).iter_samples())
    assert [s.index for s in kept] == [0, 1, 2]
    assert all(np.array_equal(a.rgb, make_sample(i, h=16, w=16).rgb) for i, a in enumerate(kept))
    mtime = (first / "manifest.json").stat().st_mtime
    assert first_samples(src, first, 3) == first and (first / "manifest.json").stat().st_mtime == mtime  # reused
    shuffled = list(dataset.DatasetReader(patch_shuffled(src, tmp_path / "shuffled")).iter_samples())
    assert len(shuffled) == 5
    original = make_sample(0, h=16, w=16).rgb
    assert not np.array_equal(shuffled[0].rgb, original)  # patches moved
    assert np.array_equal(np.sort(shuffled[0].rgb.reshape(-1)), np.sort(original.reshape(-1)))  # same pixels


def test_targets_are_checked_per_table_that_was_run():
    tables = {"cpu": {"b": "b", "c": "c", "f": "f", "g": "g"}, "end point": {"b": "v51", "c": "v50", "f": "v49"}}
    lines = table_target_lines(_entries(), "test", tables)
    assert lines[0] == "cpu (b as b, c as c, f as f, g as g):" and not any("end point" in line for line in lines)
