"""Findings of the second adversarial sweep (issue 43): nothing lost, nothing wrong in silence. Each test names
the D numbers it closes."""

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import SIZE, make_sample
from distill.checkpoint import CheckpointError, load_model, save_checkpoint
from distill.networks import build_depth_model
from distill.teacher import TeacherError, TeacherSpec, load_teacher
from distill.train import train
from simgen.options import ConfigError


def distill_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "distill.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture
def student_file(tmp_path):
    path = tmp_path / "run" / "student.pt"
    path.parent.mkdir()
    save_checkpoint(path, build_depth_model("mobilenetv2"), "mobilenetv2", SIZE, 0.1, 10.0)
    return path


def test_export_never_replaces_a_file_without_force(student_file):
    """D2: `distill export` overwrote whatever was at --out (`--out RUN/student.pt` replaced the trained checkpoint)
    and at NAME.json beside it (`--out RUN/config.onnx` replaced config.json). An existing --out or spec is
    refused unless --force; the spec is named after the whole file (config.onnx.json), so it never meets a
    run's config.json, and two formats of one model do not share one."""
    run = student_file.parent
    (run / "config.json").write_text("{}")
    before = student_file.read_bytes()
    r = distill_cli("export", "--model", student_file, "--format", "torchscript", "--out", student_file)
    assert r.returncode == 2 and "pass --force" in r.stderr and student_file.read_bytes() == before
    for fmt, name in (("torchscript", "config.ts"), ("onnx", "config.onnx")):
        r = distill_cli("export", "--model", student_file, "--format", fmt, "--out", run / name)
        assert r.returncode == 0, r.stderr
        assert json.loads((run / f"{name}.json").read_text())["format"] == fmt
    assert (run / "config.json").read_text() == "{}"
    (run / "config.ts").write_bytes(b"mine")
    r = distill_cli("export", "--model", student_file, "--format", "torchscript", "--out", run / "config.ts")
    assert r.returncode == 2 and "config.ts" in r.stderr and (run / "config.ts").read_bytes() == b"mine"
    r = distill_cli("export", "--model", student_file, "--format", "torchscript", "--out", run / "config.ts",
                    "--force")
    assert r.returncode == 0 and (run / "config.ts").read_bytes() != b"mine"


def test_a_bad_val_folder_is_refused_before_anything_is_built(tmp_path, synthetic_shards, teacher_file, train_config):
    """D8: a bad --val folder was found only at the first validation step, and the run directory then deleted."""
    cfg = train_config(synthetic_shards, teacher_file, tmp_path / "run", val=str(tmp_path / "nope"), val_every=1)
    with pytest.raises(Exception, match="--val .*nope"):
        train(cfg, show_progress=False)
    assert not (tmp_path / "run").exists()


NAN_TEACHER = '''
import torch


class LaterNaN(torch.nn.Module):
    """Depth about 2 m on its first two calls (the load check's), NaN after."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return 2.0 + x[:, :1].abs() if self.calls <= 2 else torch.full_like(x[:, :1], float("nan"))


def make():
    return LaterNaN()
'''


def test_a_non_finite_loss_stops_the_run_naming_the_step_and_eval_refuses_nan_metrics(tmp_path, synthetic_shards,
                                                                                        train_config, monkeypatch):
    """D5: a teacher that goes NaN made `train` exit 0 with a student of NaNs, and `eval` print nan metrics with
    exit 0. Now the run stops at the first non-finite loss, naming the step and the likely cause (nothing is
    left: it stopped before its first checkpoint), and eval refuses a model that predicts non-finite depth."""
    from distill.distiller import NonFiniteLoss

    (tmp_path / "nanteacher.py").write_text(NAN_TEACHER)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = train_config(synthetic_shards, "nanteacher:make", tmp_path / "nan-run", mixing=False, transform="off")
    with pytest.raises(NonFiniteLoss, match="step 1: the student's KD loss is nan .*teacher's depth"):
        train(cfg, show_progress=False)
    assert not (tmp_path / "nan-run").exists()
    model = build_depth_model("mobilenetv2")
    with torch.no_grad():
        model.decoder.head.bias.fill_(float("nan"))
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, model, "mobilenetv2", SIZE, 0.1, 10.0)
    r = distill_cli("eval", "--model", bad, "--data", synthetic_shards, "--out", tmp_path / "ev")
    assert r.returncode == 2 and "non-finite depth" in r.stderr and not (tmp_path / "ev" / "metrics.json").exists()


def test_fit_teacher_on_depth_without_valid_pixels_stops_instead_of_writing_a_nan_teacher(tmp_path):
    """D5: fit-teacher on all-zero depth wrote a NaN teacher."""
    from distill.distiller import NonFiniteLoss
    from distill.fit_teacher import FitConfig, fit_teacher
    from simgen.dataset import DatasetWriter

    data = tmp_path / "zero"
    with DatasetWriter(data, depth_scale=1000.0, max_depth_m=10.0, samples_per_shard=8) as w:
        for i in range(8):
            s = make_sample(i, h=32, w=64)
            w.add(replace(s, depth=np.zeros_like(s.depth)))
    with pytest.raises(NonFiniteLoss, match="step 1: the supervised loss .*ground truth"):
        fit_teacher(FitConfig(data=str(data), out=str(tmp_path / "t.ckpt"), arch="mobilenetv2", input_size=SIZE,
                              split=None, steps=2, batch_size=4, workers=0, device="cpu", precision="fp32"),
                    show_progress=False)
    assert not (tmp_path / "t.ckpt").exists()


def test_a_run_directory_given_as_a_model_names_the_student_inside(student_file):
    """D29: a run directory given as --teacher or --model said "no such file"."""
    run = student_file.parent
    with pytest.raises(CheckpointError, match=f"{run} is a directory: give the model file inside it, .*student.pt"):
        load_model(run)
    with pytest.raises(TeacherError, match="--teacher .* is a directory: give the model file inside it"):
        load_teacher(TeacherSpec(str(run)))
    r = distill_cli("export", "--model", run, "--format", "onnx", "--out", run / "x.onnx")
    assert r.returncode == 2 and "student.pt" in r.stderr.splitlines()[-1]


def test_help_says_which_flags_repeat():
    """D37: --help did not say that --shards and --images repeat (`--shards a b` fails)."""
    r = distill_cli("train", "--help")
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line.strip().startswith("--")}
    assert "repeat" in lines["--shards"] and "repeat" in lines["--images"]


@pytest.mark.parametrize("argv, message", [
    (["--teacher-scale", "nan"], "--teacher-scale must be a finite number"),              # D5
    (["--teacher-scale", "inf"], "--teacher-scale must be a finite number"),              # D5
    (["--clip", "-1"], "--clip must be positive"),                                        # D6
    (["--clip", "0"], "--clip must be positive"),                                         # D6
    (["--lr", "-1"], "--lr must be positive"),                                            # D14
    (["--lr", "nan"], "--lr must be a finite number"),                                    # D14
    (["--weight-decay", "-1"], "--weight-decay must be 0 or more"),                       # D14
    (["--lr-transform", "-1"], "--lr-transform must be positive"),                        # D14
    (["--teacher-input-size", "0x0"], "each side must be at least 1 pixel"),              # D20
    (["--mix-max-objects", "0"], "--mix-max-objects must be at least 1"),                 # D33
    (["--mix-prob", "2"], "--mix-prob must be at most 1"),                                # D33
])
def test_numeric_options_are_checked_at_their_one_owner(tmp_path, argv, message):
    """D5, D6, D14, D20, D33, D36: numbers were not validated (NaN scales, a negative clip that flips the gradient,
    a zero clip that freezes the model, negative learning rates, 0x0 sizes, mixing that pastes with 0 objects,
    a zero depth scale). Every config field declares its bounds once (simgen/options.py `option(low=, high=,
    positive=)`; every float must be finite) and one check (`check_fields`) holds them for flags, config files
    and the API alike: one line, exit 2, nothing written."""
    from distill.cli import parse_train_config

    base = ["--shards", str(tmp_path), "--teacher", "t.ckpt", "--out", str(tmp_path / "run")]
    with pytest.raises(Exception, match=message):
        parse_train_config(base + argv)
    r = distill_cli("train", *base, *argv)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()


def test_numeric_checks_hold_for_fit_eval_and_render_too(tmp_path):
    """D14 (fit-teacher --lr -1), D20 (--input-size 0x0, --size 0x0), D36 (eval --depth-scale 0 ended in "no image
    had valid ground truth" without naming the flag)."""
    r = distill_cli("fit-teacher", "--data", tmp_path, "--out", tmp_path / "t.ckpt", "--lr", "-1")
    assert r.returncode == 2 and "--lr must be positive" in r.stderr
    r = distill_cli("eval", "--model", "m.pt", "--data", tmp_path, "--depth-scale", "0")
    assert r.returncode == 2 and "--depth-scale must be positive" in r.stderr
    r = distill_cli("mix-preview", "--shards", tmp_path, "--out", tmp_path / "m.png", "--size", "0x0")
    assert r.returncode == 2 and "each side must be at least 1 pixel" in r.stderr
    r = subprocess.run([sys.executable, "-m", "simgen.cli", "render", "--n", "4", "--out", str(tmp_path / "o"),
                        "--indoor-ratio", "nan"], capture_output=True, text=True)
    assert r.returncode == 2 and "--indoor-ratio must be a finite number" in r.stderr
    assert not (tmp_path / "t.ckpt").exists() and not (tmp_path / "o").exists()


def test_a_shard_rendered_again_replaces_a_damaged_file_of_unchanged_size_and_time(tmp_path):
    """D3: `simgen render --verify` found a bit-flipped shard whose size and mtime were unchanged, rendered it
    again and said so, but `commit_shard` compared size and mtime only and kept the corrupt file."""
    from simgen import dataset, shards
    from simgen.runs import sha256_file

    root = tmp_path / "ds"
    with dataset.DatasetWriter(root, depth_scale=1000.0, max_depth_m=10.0, samples_per_shard=4) as w:
        for i in range(4):
            w.add(make_sample(i))
    record = dataset.DatasetReader(root).shards[0]
    path = root / shards.SHARD_DIR / record["name"]
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same time: only the bytes differ
    assert dataset.DatasetReader(root).verify(record) == "checksum mismatch"
    again = shards.stage_shard(path, [make_sample(i) for i in range(4)], 1000.0)
    dataset.commit_shard(root, again)
    assert sha256_file(path) == record["sha256"] and dataset.DatasetReader(root).verify(record) is None


def _dataset(tmp_path, n=8, per_shard=4):
    from simgen import dataset

    root = tmp_path / "ds"
    with dataset.DatasetWriter(root, depth_scale=1000.0, max_depth_m=10.0, samples_per_shard=per_shard) as w:
        for i in range(n):
            w.add(make_sample(i))
    return root


def _edit_manifest(root, change):
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("depth"), "depth.scale must be a positive number"),                                      # D15
    (lambda m: m.pop("shards"), "shards must be an object"),                                                  # D15
    (lambda m: m.update(samples_per_shard=0), "samples_per_shard must be a whole number of at least 1"),       # D15
    (lambda m: m["shards"]["shard-000000.tar"].update(first_index=None), "first_index, count, bytes and sha256"),  # D15
    (lambda m: m["shards"].update({"shard-000000.tar": "x"}), "not a shard file name of this dataset"),       # D15
    (lambda m: m["shards"].update({"../../outside/victim.tar": m["shards"]["shard-000000.tar"]}),
     "not a shard file name of this dataset"),                                                                # D16
    (lambda m: m["shards"].update({"/etc/passwd": {**m["shards"]["shard-000000.tar"], "name": "/etc/passwd"}}),
     "not a shard file name of this dataset"),                                                                # D16
    (lambda m: m["shards"]["shard-000001.tar"].update(first_index=0), "are not where shard 1"),               # D17
    (lambda m: m["shards"]["shard-000000.tar"].update(count=103), "are not where shard 0"),                   # D17
])
def test_a_hand_edited_manifest_is_refused_in_one_line(tmp_path, change, message):
    """D15 (missing or mistyped fields gave tracebacks, samples_per_shard 0 a division by zero), D16 (shard names
    were not confined to OUT/shards: ../../outside/victim.tar was read, /etc/passwd opened), D17 (a shard listed
    twice was trained on twice; counts were never checked): the manifest is checked where it is loaded, so
    inspect, preview, render, train and eval refuse it alike."""
    root = _dataset(tmp_path)
    _edit_manifest(root, change)
    r = subprocess.run([sys.executable, "-m", "simgen.cli", "inspect", str(root)], capture_output=True, text=True)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_sample_counts_are_checked_against_the_shards(tmp_path):
    """D17: `inspect` reported "samples 103, checksums ok" for 8 real samples; a record whose count is not what its
    shard holds is now reported by inspect's verification and refused by every reader."""
    from simgen import dataset

    root = _dataset(tmp_path, n=6, per_shard=4)
    _edit_manifest(root, lambda m: m["shards"]["shard-000001.tar"].update(count=4))
    r = subprocess.run([sys.executable, "-m", "simgen.cli", "inspect", str(root)], capture_output=True, text=True)
    assert r.returncode == 1 and "holds 2 samples, the manifest says 4" in r.stdout + r.stderr
    with pytest.raises(Exception, match="holds 2 samples, the manifest says 4"):
        list(dataset.DatasetReader(root).iter_samples())


def test_a_linked_lock_file_is_not_followed(tmp_path):
    """D35: a symlinked OUT/.manifest.lock was followed, creating a file outside --out."""
    from simgen import dataset, shards

    root = _dataset(tmp_path)
    (root / ".manifest.lock").unlink(missing_ok=True)
    (root / ".manifest.lock").symlink_to(tmp_path / "outside")
    record = shards.stage_shard(root / shards.SHARD_DIR / shards.shard_name(5), [make_sample(20)], 1000.0)
    with pytest.raises(shards.ShardError, match="is a link"):
        dataset.commit_shard(root, record)
    assert not (tmp_path / "outside").exists()


def test_images_skip_depth_maps_and_decompression_bombs_and_say_how_many(tmp_path, capsys, monkeypatch):
    """D4: 16-bit greyscale PNGs (depth maps: an RGB-D folder given to --images) were trained on as photos, white
    after convert("RGB"). D12: an image over PIL's decompression-bomb limit gave a traceback. Both are skipped
    and counted."""
    from PIL import Image

    from distill.data import readable_images

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "photo.png")
    Image.fromarray(np.full((8, 8), 3000, np.uint16)).save(tmp_path / "depth.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64x64 = 4096 > 2x the limit: a bomb
    assert [p.name for p in readable_images(tmp_path)] == ["photo.png"]
    err = capsys.readouterr().err
    assert "1 single-channel 16-bit or float image(s) skipped as depth maps, e.g. depth.png" in err
    assert "1 of 3 files unreadable, skipped: huge.png (DecompressionBombError)" in err


FACTORIES = '''
import torch


def raises():
    raise RuntimeError("no weights here")


def not_a_module():
    return 42


NOT_CALLABLE = 3
'''


@pytest.mark.parametrize("source, message", [
    ("badfactories:raises", "the factory raised RuntimeError: no weights here"),
    ("badfactories:not_a_module", "the factory returned a int, not a torch.nn.Module"),
    ("badfactories:NOT_CALLABLE", "not a model factory"),
    ("os:system", "the factory raised TypeError"),
])
def test_a_teacher_factory_that_fails_is_one_line(tmp_path, monkeypatch, source, message):
    """D13: `--teacher module:factory` whose factory raises, returns a non-Module, or is not callable (`os:system`)
    gave a traceback."""
    (tmp_path / "badfactories.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TeacherError, match=message):
        load_teacher(TeacherSpec(source))


def test_teacher_weights_beside_a_teacher_file_are_refused(student_file):
    """D27: --teacher-weights was ignored without a word for teachers that are not factories."""
    with pytest.raises(TeacherError, match="--teacher-weights is for a package.module:factory teacher"):
        load_teacher(TeacherSpec(str(student_file), weights=str(student_file)))


def test_each_command_says_which_model_formats_it_takes(tmp_path, student_file):
    """D30: `eval --model x.onnx` reported an UnpicklingError and `export --model x.pt2` "probably corrupted". D32:
    --student-imagenet pointing at a non-torch file gave a traceback."""
    from distill.export import export_model

    model, info = load_model(student_file)
    export_model(model, info.input_size, tmp_path / "s.onnx", "onnx")
    (tmp_path / "s.onnx.json").unlink()  # with its spec beside it, eval runs an export (tests/test_export_device.py)
    r = distill_cli("eval", "--model", tmp_path / "s.onnx", "--data", tmp_path)
    assert r.returncode == 2 and "is an ONNX model: eval and export take a checkpoint" in r.stderr
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(ConfigError, match="--student-imagenet .*notes.txt: not a torch state dict file"):
        build_depth_model("mobilenetv2", imagenet_weights=str(tmp_path / "notes.txt"))


READ_ONLY = "/sys/distill-test-out"  # not writable, even for root


def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path, synthetic_shards, teacher_file,
                                                                    student_file, train_config):
    """D18: a read-only file system at the output path in train, eval, export, mix-preview and gap (fit-teacher
    trained every step and failed only at the save). D19: `gap --out DIR/x.png` with a missing DIR failed after
    all the measuring. Every command now makes the output's folder and proves it writable first
    (`simgen.runs.require_writable`), and says so in one line."""
    from distill.fit_teacher import FitConfig, fit_teacher

    with pytest.raises(ConfigError, match=f"--out {READ_ONLY}.*cannot write there"):
        train(train_config(synthetic_shards, teacher_file, READ_ONLY), show_progress=False)
    with pytest.raises(ConfigError, match="cannot write there"):
        fit_teacher(FitConfig(data=str(synthetic_shards), out=f"{READ_ONLY}/t.ckpt", steps=2, workers=0),
                    show_progress=False)
    for argv in (["eval", "--model", student_file, "--data", synthetic_shards, "--out", READ_ONLY],
                 ["export", "--model", student_file, "--format", "onnx", "--out", f"{READ_ONLY}/s.onnx"],
                 ["mix-preview", "--shards", synthetic_shards, "--out", f"{READ_ONLY}/m.png"],
                 ["gap", "--teacher", teacher_file, "--shards", synthetic_shards, "--out", f"{READ_ONLY}/g.png"]):
        r = distill_cli(*argv)
        assert r.returncode == 2 and "cannot write there" in r.stderr, (argv, r.stderr[-500:])
    r = distill_cli("gap", "--teacher", teacher_file, "--shards", synthetic_shards, "--n", 4,
                    "--out", tmp_path / "new" / "g.png")
    assert r.returncode == 0 and (tmp_path / "new" / "g.png").exists(), r.stderr[-500:]


def test_preview_sizes_are_bounded(tmp_path, synthetic_shards):
    """D11: `simgen preview --height 100000` allocated 24 GB and was OOM-killed."""
    for flag, value in (("--height", 100000), ("--count", 100000)):
        r = subprocess.run([sys.executable, "-m", "simgen.cli", "preview", str(synthetic_shards), "--out",
                            str(tmp_path / "s.png"), flag, str(value)], capture_output=True, text=True)
        assert r.returncode == 2 and f"{flag}: {value} is not in the range" in r.stderr


@pytest.mark.parametrize("values, message", [
    ({"steps": "20"}, "steps must be a whole number, got '20'"),
    ({"batch_size": 2.5}, "batch_size must be a whole number, got 2.5"),
    ({"lr": None}, "lr must be a number, got None"),
    ({"shards": "dir"}, "shards must be a list of text, got 'dir'"),
    ({"colour": 1}, "unknown fields colour"),
])
def test_config_file_values_are_type_checked(tmp_path, values, message):
    """D21: --config values were not type-checked (`steps: "20"`, `batch_size: 2.5`, `lr: null`); `shards: "dir"`
    was iterated per character."""
    from distill.cli import parse_train_config

    (tmp_path / "c.json").write_text(json.dumps({"teacher": {"source": "t.ckpt"}, "shards": ["s"], **values}))
    with pytest.raises(ConfigError, match=message):
        parse_train_config(["--config", str(tmp_path / "c.json")])


class _Zero(torch.nn.Module):
    def forward(self, x):
        return torch.zeros_like(x[:, :1])


def test_a_teacher_whose_output_is_constant_is_not_ok(tmp_path):
    """D25: teacher-check called a teacher whose output is all zeros "ok for the full method"; with
    `--teacher-output inverse` every target then became 1e6 m."""
    path = tmp_path / "zero.ts"
    torch.jit.script(_Zero()).save(str(path))
    for output in ("metric", "inverse"):
        r = distill_cli("teacher-check", path, "--teacher-input-size", "64x32", "--teacher-output", output)
        assert r.returncode == 2 and "the same everywhere (0) on a random image: not a depth map" in r.stderr


def test_another_teacher_path_into_a_finished_run_names_the_difference(tmp_path, synthetic_shards, teacher_file,
                                                                      train_config):
    """D28: a different --teacher path into a finished run said "the file has changed" instead of "differs in:
    teacher"."""
    import shutil

    cfg = train_config(synthetic_shards, teacher_file, tmp_path / "run", steps=2)
    train(cfg, show_progress=False)
    other = tmp_path / "other-teacher.ckpt"
    shutil.copy(teacher_file, other)
    with pytest.raises(FileExistsError, match=r"differs in: teacher\)"):
        train(train_config(synthetic_shards, other, tmp_path / "run", steps=2), show_progress=False)


def test_a_full_disk_during_a_checkpoint_save_says_so(tmp_path, monkeypatch):
    """D31: a full disk during a checkpoint save said "[enforce fail at inline_container.cc:672]" and never "no
    space left on device"."""
    import shutil as _shutil

    import distill.checkpoint as checkpoint

    def full(*_, **__):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1024 vs 998")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: _shutil._ntuple_diskusage(10 ** 9, 10 ** 9, 0))
    with pytest.raises(CheckpointError, match="no space left on device: 0 MiB free"):
        save_checkpoint(tmp_path / "s.pt", build_depth_model("mobilenetv2"), "mobilenetv2", SIZE, 0.1, 10.0)
    assert not list(tmp_path.iterdir())  # no half-written file left


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_crafted_checkpoint_cannot_run_code(tmp_path, student_file):
    """D1: checkpoints were loaded with torch.load(weights_only=False): a crafted .ckpt given to teacher-check,
    `eval --model` or `export --model` ran code. They are loaded weights-only now (tensors, plain data, sizes and
    numpy's RNG state), and the project's own files (the stand-in teacher, a run's checkpoint) still load."""
    from distill.checkpoint import read_checkpoint
    from distill.standin import STANDIN_CKPT

    evil = tmp_path / "evil.ckpt"
    ckpt = torch.load(student_file, weights_only=False)
    ckpt["payload"] = _Evil()
    torch.save(ckpt, evil)
    for argv in (["teacher-check", evil], ["eval", "--model", evil, "--data", tmp_path],
                 ["export", "--model", evil, "--format", "onnx", "--out", tmp_path / "x.onnx"]):
        r = distill_cli(*argv, cwd=tmp_path)
        assert r.returncode == 2 and "could run code" in r.stderr, r.stderr[-400:]
    assert not (tmp_path / "pwned").exists()
    assert read_checkpoint(STANDIN_CKPT)["model_arch"] == "resnet18"


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_an_exported_student_used_as_a_teacher_reads_its_own_spec(tmp_path, student_file, fmt):
    """D24: a student exported by `distill export` and used as --teacher was normalised a second time with ImageNet
    statistics, and a TorchScript export ran at 320x224, not its 64x32."""
    from distill.export import export_model

    model, info = load_model(student_file)
    out = tmp_path / f"s.{'ts' if fmt == 'torchscript' else 'onnx'}"
    export_model(model, info.input_size, out, fmt)
    teacher = load_teacher(TeacherSpec(str(out)))
    assert teacher.spec.input_size == SIZE and teacher.spec.mean == (0.0, 0.0, 0.0) and teacher.spec.std == (1.0,) * 3
    image = torch.rand(2, 3, *SIZE.hw)
    with torch.no_grad():
        torch.testing.assert_close(teacher.target(image), model(image), rtol=1e-3, atol=1e-3)


class _FourChannels(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x):
        return self.conv(x).abs() + 1


def test_a_teacher_that_wants_other_channels_says_so_in_one_line(tmp_path):
    """D26: a teacher expecting 4 input channels was told "check --teacher-input-size", and for TorchScript the
    one line was a 30-line dump."""
    path = tmp_path / "four.ts"
    torch.jit.script(_FourChannels()).save(str(path))
    r = distill_cli("teacher-check", path, "--teacher-input-size", "64x32")
    assert r.returncode == 2 and "distill feeds 3-channel RGB" in r.stderr
    assert len([line for line in r.stderr.splitlines() if line.strip()]) == 1


def _library(tmp_path, **mesh):
    lib = tmp_path / "lib"
    lib.mkdir(exist_ok=True)
    (lib / "box.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\n")
    entry = {"name": "box", "file": "box.obj", "category": "box", "placement": "floor", "family": "indoor",
             "scale": 1.0, **mesh}
    (lib / "library.json").write_text(json.dumps({"format": "simgen-assets", "version": 1, "meshes": [entry]}))
    return lib


@pytest.mark.parametrize("mesh, message", [
    ({"bbox": "big"}, "bad bbox 'big'"),                                              # D22
    ({"scale": "big"}, "meshes[0] (box): bad scale 'big'"),                            # D22
    ({"file": "/etc/hostname"}, "lies outside the library folder"),                    # D23
    ({"file": "../lib/../../outside.obj"}, "lies outside the library folder"),         # D23
])
def test_asset_check_names_each_bad_entry_instead_of_crashing(tmp_path, mesh, message):
    """D22: `simgen assets check` crashed on `meshes: 5` or `bbox: "big"`, and reported `scale: "big"` without
    naming the file or the entry. D23: an absolute or ../ mesh path passed check, then render failed with a
    pathlib message; paths are confined to the library folder."""
    lib = _library(tmp_path, **mesh)
    r = subprocess.run([sys.executable, "-m", "simgen.cli", "assets", "check", str(lib)], capture_output=True,
                       text=True)
    assert r.returncode == 1 and message in r.stdout and "Traceback" not in r.stderr, r.stdout + r.stderr
    (lib / "library.json").write_text(json.dumps({"format": "simgen-assets", "version": 1, "meshes": 5}))
    r = subprocess.run([sys.executable, "-m", "simgen.cli", "assets", "check", str(lib)], capture_output=True,
                       text=True)
    assert r.returncode == 1 and "library.json meshes: must be a list of entries, got 5" in r.stdout


def test_an_unreachable_ray_address_is_one_line_at_once(tmp_path):
    """D34: `--executor ray --ray-address 127.0.0.1:1` hung with log spam (still retrying after 124 s)."""
    import time

    pytest.importorskip("ray")
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "simgen.cli", "render", "--n", "2", "--out", str(tmp_path / "o"),
                        "--executor", "ray", "--ray-address", "127.0.0.1:1"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "cannot reach a Ray cluster there" in r.stderr and time.time() - t0 < 60


def test_evaluating_a_simgen_dataset_keeps_memory_flat_in_its_size(tmp_path):
    """D9: `distill eval --data <simgen dataset>`, fit-teacher and `gap --real` kept every decoded sample in RAM
    (0.67 MB per 320x240 sample: 34 GB for the README's 50,000). Samples are now read one at a time from their
    shard (an index of where each lies): the peak of a pass over 8 and over 48 samples differs by far less than
    the 40 extra samples' decoded size."""
    import tracemalloc

    from distill.data import RGBDFolder
    from simgen.synthetic import write_synthetic_dataset

    def peak(n: int) -> int:
        root = write_synthetic_dataset(tmp_path / f"ds{n}", n=n, size=(240, 320), samples_per_shard=8)
        tracemalloc.start()
        ds = RGBDFolder(root)
        for i in range(len(ds)):
            ds[i]
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    per_sample = 240 * 320 * (3 + 4 + 2)  # RGB bytes, float depth, uint16 ids as decoded
    small, large = peak(8), peak(48)
    assert large - small < 0.1 * 40 * per_sample, (small, large)
