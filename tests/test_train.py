"""Distillation end to end on tiny synthetic shards with a tiny teacher (CPU, seconds)."""

import json
from dataclasses import asdict
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from distill.layers import FeatureTap, feature_hint_loss, total_variation
from distill.networks import build_depth_model
from distill.teacher import TeacherError, TeacherSpec, load_teacher
from distill.train import Distiller, TrainConfig, make_loader, train
from simgen.options import ConfigError, Size

from conftest import SIZE


def student_error(student, teacher, images):
    with torch.no_grad():
        t = teacher.target(images)
        return ((student(images) - t).abs() / t).mean().item()


def test_student_learns_the_teacher(tmp_path, synthetic_shards, teacher_file, train_config):
    cfg = train_config(synthetic_shards, teacher_file, tmp_path / "run", steps=80, lr=3e-3, transform="on", mixing=True)
    summary = train(cfg, show_progress=False)
    assert summary["steps"] == 80
    ckpt = torch.load(tmp_path / "run" / "student.pt", weights_only=False)
    student = build_depth_model("mobilenetv2", 0.1, 10.0)
    untrained_err = None
    teacher = load_teacher(TeacherSpec(str(teacher_file), input_size=SIZE))
    from distill.data import ShardStream
    images = torch.stack([it["rgb"] for _, it in zip(range(8), ShardStream([synthetic_shards], SIZE.hw, seed=5, augment=False))])
    student.eval()
    untrained_err = student_error(student, teacher, images)
    student.load_state_dict(ckpt["model"])
    student.eval()
    trained_err = student_error(student, teacher, images)
    assert untrained_err > 0.1, "the teacher predicts scene-dependent depth"
    assert trained_err < 0.5 * untrained_err, (trained_err, untrained_err)
    assert (tmp_path / "run" / "tb").is_dir() and json.loads((tmp_path / "run" / "config.json").read_text())["steps"] == 80


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_continues_exactly(tmp_path, synthetic_shards, teacher_file, monkeypatch, precision, train_config):
    straight = train_config(synthetic_shards, teacher_file, tmp_path / "a", steps=6, precision=precision)
    train(straight, show_progress=False)
    # the same run interrupted (Ctrl-C) during step 5, after the checkpoint of step 3
    interrupted = train_config(synthetic_shards, teacher_file, tmp_path / "b", steps=6, precision=precision)
    real_step = Distiller.train_step

    def step_or_interrupt(self, batch):
        if self.step == 4:
            raise KeyboardInterrupt
        return real_step(self, batch)

    monkeypatch.setattr(Distiller, "train_step", step_or_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, show_progress=False)
    monkeypatch.setattr(Distiller, "train_step", real_step)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["step"] == 3
    train(replace(interrupted, resume=True), show_progress=False)
    a = torch.load(tmp_path / "a" / "student.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "student.pt", weights_only=False)
    assert a["step"] == b["step"] == 6
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-5)
    for k in a["transform"]:
        torch.testing.assert_close(a["transform"][k], b["transform"][k], rtol=1e-4, atol=1e-5)


def test_a_finished_run_is_never_overwritten_and_resume_checks_the_config(tmp_path, synthetic_shards, teacher_file, train_config):
    cfg = train_config(synthetic_shards, teacher_file, tmp_path / "run", steps=2)
    train(cfg, show_progress=False)
    student = (tmp_path / "run" / "student.pt").read_bytes()
    assert train(cfg, show_progress=False)["already_finished"]  # the same run again: nothing to do
    with pytest.raises(FileExistsError, match=r"finished run with another config \(differs in: lr\)"):
        train(replace(cfg, lr=0.5), show_progress=False)
    assert (tmp_path / "run" / "student.pt").read_bytes() == student
    # an unfinished run (killed before its end): only --resume continues it, and only with its config
    (tmp_path / "run" / "student.pt").rename(tmp_path / "student-kept.pt")
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with pytest.raises(FileExistsError, match="pass --resume"):
        train(cfg, show_progress=False)
    with pytest.raises(ConfigError, match="differs in: lr"):
        train(replace(cfg, lr=0.5, resume=True, steps=4), show_progress=False)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before


def test_a_run_is_not_reused_or_continued_once_its_teacher_file_changed(tmp_path, synthetic_shards, teacher_file,
                                                                     train_config):
    teacher = tmp_path / "teacher.ckpt"
    shutil.copy(teacher_file, teacher)
    cfg = train_config(synthetic_shards, teacher, tmp_path / "run", steps=2)
    train(cfg, show_progress=False)
    student = (tmp_path / "run" / "student.pt").read_bytes()
    assert train(cfg, show_progress=False)["already_finished"]  # the same teacher file: the run is reused
    # the teacher refitted to the same path: same options, other weights
    ckpt = torch.load(teacher, weights_only=False)
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][name] = ckpt["model"][name] + 0.01
    torch.save(ckpt, teacher)
    with pytest.raises(ConfigError, match="distilled from another teacher"):
        train(cfg, show_progress=False)
    with pytest.raises(ConfigError, match="distilled from another teacher"):  # nor extended with more steps
        train(replace(cfg, resume=True, steps=4), show_progress=False)
    assert (tmp_path / "run" / "student.pt").read_bytes() == student
    # an unfinished run is not continued with the other teacher either
    (tmp_path / "run" / "student.pt").rename(tmp_path / "student-kept.pt")
    with pytest.raises(ConfigError, match="distilled from another teacher"):
        train(replace(cfg, resume=True), show_progress=False)
    shutil.copy(teacher_file, teacher)  # the original teacher back: the run continues
    assert train(replace(cfg, resume=True, steps=3), show_progress=False)["steps"] == 3


def test_out_directories_that_are_not_runs_are_refused(tmp_path, synthetic_shards, teacher_file, train_config, monkeypatch):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match=r"holds other files \(notes.txt\)"):
        train(train_config(synthetic_shards, teacher_file, tmp_path / "mine"), show_progress=False)
    with pytest.raises(FileExistsError, match="holds other files"):  # a simgen dataset is not a run directory
        train(train_config(synthetic_shards, teacher_file, synthetic_shards), show_progress=False)
    monkeypatch.chdir(tmp_path / "mine")
    with pytest.raises(ConfigError, match="must name a run directory"):
        train(train_config(synthetic_shards, teacher_file, ""), show_progress=False)
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_cli_and_api_build_the_same_config_and_a_config_file_reproduces_a_run(tmp_path):
    from distill.cli import build_parser, train_config_from_args

    def parse(*argv):
        return train_config_from_args(build_parser().parse_args(["train", *argv]))

    cli = parse("--shards", "s", "--teacher", "t.ckpt", "--out", str(tmp_path / "r"))
    api = TrainConfig(shards=["s"], teacher={"source": "t.ckpt"}, out=str(tmp_path / "r"))
    assert cli == api  # same defaults, teacher normalisation included
    tuned = parse("--shards", "s", "--teacher", "t.ckpt", "--out", str(tmp_path / "r"), "--warmup", "7", "--w-grad", "0.5",
                  "--clip", "2", "--mix-prob", "0.3", "--min-depth", "0.2", "--w-normal", "0", "--mixing", "off")
    assert (tuned.warmup, tuned.w_grad, tuned.clip, tuned.mix["prob"], tuned.min_depth, tuned.w_normal, tuned.mixing) == \
        (7, 0.5, 2.0, 0.3, 0.2, 0.0, False)
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(asdict(tuned)))
    again = parse("--config", str(saved), "--out", str(tmp_path / "r2"))
    assert again == replace(tuned, out=str(tmp_path / "r2"))
    assert parse("--config", str(saved), "--seed", "3").seed == 3


@pytest.mark.parametrize("transform_net", ["residual", "photometric"])
def test_transform_moves_images_toward_the_teachers_bn_statistics(tmp_path, synthetic_shards, teacher_file, train_config,
                                                                  transform_net):
    """Dark, low-contrast images are far from what the teacher's BN layers saw; T's steps must
    bring the BN loss of a held-out batch of such images down, with either design of T."""
    d = Distiller(train_config(synthetic_shards, teacher_file, tmp_path / "run", mixing=False, lr_transform=3e-3,
                         warmup=1, steps=40, bn_loss="normalized", transform_net=transform_net))
    images = next(iter(make_loader(replace(d.cfg, batch_size=16, workers=0), SIZE.hw)))
    dark = dict(images, rgb=0.1 + 0.3 * images["rgb"])

    def held_out_bn() -> float:
        with torch.no_grad():
            d.teacher.target(d.transform(dark["rgb"][8:]).clamp(0, 1))
        return sum(h.loss(normalized=True).item() for h in d.bn_hooks)

    before = held_out_bn()
    for _ in range(40):
        d.train_step({k: v[:8] for k, v in dark.items()})
    # measured: residual 24.1 -> 7.5 (0.31x), photometric 24.1 -> 11.4 (0.47x: a handful of global
    # parameters, so less reach than a free residual). With bn_loss="sum" the same check gave 0.69x in one run and 0.90x
    # in another (the plain sum is dominated by deep layers; see docs/results-round1.md): not tested
    assert held_out_bn() < 0.6 * before


def test_bad_bn_loss_name_is_refused(tmp_path, synthetic_shards, teacher_file, train_config):
    with pytest.raises(ValueError, match="bn_loss 'mean'"):
        Distiller(train_config(synthetic_shards, teacher_file, tmp_path / "run", bn_loss="mean"))
    with pytest.raises(ValueError, match="transform_net 'gan'"):
        Distiller(train_config(synthetic_shards, teacher_file, tmp_path / "run", transform_net="gan"))
    with pytest.raises(ValueError, match="--w-tv must be 0 or more"):
        Distiller(train_config(synthetic_shards, teacher_file, tmp_path / "run", w_tv=-1.0))
    with pytest.raises(ValueError, match="bn_layers 'mid'"):
        Distiller(train_config(synthetic_shards, teacher_file, tmp_path / "run", bn_layers="mid"))
    with pytest.raises(ValueError, match="bn_layers '0:0'.*not both 0"):
        Distiller(train_config(synthetic_shards, teacher_file, tmp_path / "run", bn_layers="0:0"))


def test_bn_layers_option_hooks_the_chosen_half_with_its_weight(tmp_path, synthetic_shards, teacher_file, train_config):
    runs = {which: Distiller(train_config(synthetic_shards, teacher_file, tmp_path / which, bn_layers=which))
            for which in ("all", "early", "late", "0.5:2")}
    # each run loads its own teacher: compare the hooked layers by name
    hooked = {which: [dict((m, n) for n, m in d.teacher.named_modules())[h.module] for h in d.bn_hooks]
              for which, d in runs.items()}
    every = hooked["all"]
    assert len(every) >= 2 and hooked["early"] + hooked["late"] == every
    assert hooked["early"] == every[:len(hooked["early"])] and len(hooked["early"]) == (len(every) + 1) // 2
    # per-half weights: every layer hooked, each half with its weight in T's term
    assert hooked["0.5:2"] == every
    assert runs["0.5:2"].bn_weights == [0.5] * len(hooked["early"]) + [2.0] * len(hooked["late"])


def test_transform_until_freezes_t_and_keeps_applying_it(tmp_path, synthetic_shards, teacher_file, train_config):
    """--transform-until 3: T learns on steps 0-2 with its learning rate decaying to 0 at step 3, then keeps
    its weights; the student still learns on T's images (not the raw ones), with one teacher pass a step."""
    d = Distiller(train_config(synthetic_shards, teacher_file, tmp_path / "run", mixing=False, transform="on",
                               warmup=1, steps=6, transform_until=3, precision="fp32"))
    batch = next(iter(make_loader(replace(d.cfg, workers=0), SIZE.hw)))
    weights = []
    for _ in range(6):
        logs = d.train_step(batch)
        weights.append({k: v.clone() for k, v in d.transform.state_dict().items()})
        assert ("bn" in logs) == (d.step <= 3)
    changed = [any(not torch.equal(a[k], b[k]) for k in a) for a, b in zip(weights, weights[1:])]
    assert changed == [True, True, False, False, False]
    assert d.sched_t.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)
    calls = []
    d.teacher.model.register_forward_hook(lambda *_: calls.append(1))
    d.train_step(batch)
    assert len(calls) == 1
    with torch.no_grad():
        expected = d.transform(batch["rgb"]).clamp(0, 1)
    assert not torch.allclose(expected, batch["rgb"])  # T changes the images: the test can tell
    torch.testing.assert_close(d.last_images["transformed"], expected[:4])
    with pytest.raises(ValueError, match="--transform-until must be between 0"):
        train_config(synthetic_shards, teacher_file, tmp_path / "bad", steps=6, transform_until=7)


def test_total_variation_prior_smooths_what_t_adds(tmp_path, synthetic_shards, teacher_file, train_config):
    """T starts out adding a random texture. With a dominant TV prior (on T's change, so the
    renders' own edges cost nothing) T's first steps must cut that texture's TV; with the content
    loss alone they do not (measured: TV of the change 0.0041 -> 0.0022 with w_tv 1000, -> 0.0042
    without)."""
    def tv_of_change(w_tv: float) -> float:
        d = Distiller(train_config(synthetic_shards, teacher_file, tmp_path / f"run{w_tv}", mixing=False, transform="on",
                                   w_bn=0.0, lr_transform=1e-3, warmup=1, steps=20, w_tv=w_tv))
        torch.manual_seed(0)
        with torch.no_grad():
            d.transform.body[-1].weight.normal_(0, 0.05)
        batch = next(iter(make_loader(replace(d.cfg, workers=0), SIZE.hw)))
        for _ in range(2):
            logs = d.train_step(batch)
        assert ("tv" in logs) == (w_tv > 0)
        with torch.no_grad():
            return float(total_variation(d.transform(batch["rgb"]) - batch["rgb"]))

    assert tv_of_change(1000.0) < 0.6 * tv_of_change(0.0)


def test_render_depth_term_makes_t_images_the_teacher_reads_closer_to_the_render(tmp_path, synthetic_shards,
                                                                               teacher_file, train_config):
    """--w-render-depth: with that term alone in T's loss (besides a weak content term), T's updates must
    cut the teacher's scale-invariant error against the render depth on T(x); with the content term alone
    T (zero-initialised: the identity) stays where it starts (measured: 0.119 -> 0.102 in 15 steps at weight 1;
    0.119 unchanged at 0)."""
    from distill.teacher import render_depth_loss

    def teacher_error_after_steps(w: float) -> tuple[float, float]:
        d = Distiller(train_config(synthetic_shards, teacher_file, tmp_path / f"run{w}", mixing=False, transform="on",
                                   w_bn=0.0, w_content=0.1, lr_transform=3e-3, warmup=1, steps=40,
                                   w_render_depth=w))
        batch = next(iter(make_loader(replace(d.cfg, workers=0), SIZE.hw)))

        def error() -> float:
            with torch.no_grad():
                return float(render_depth_loss(d.spec.output, d.teacher.target(d.transform(batch["rgb"]).clamp(0, 1)),
                                               batch["depth"]))
        before = error()
        for _ in range(15):
            logs = d.train_step(batch)
        assert ("render_depth" in logs) == (w > 0)
        assert ("render depth x1" in d.describe_method()) == (w > 0)
        return before, error()

    before, after = teacher_error_after_steps(1.0)
    assert after < 0.9 * before
    before_off, after_off = teacher_error_after_steps(0.0)
    assert after_off == pytest.approx(before_off, rel=0.02)
    with pytest.raises(ValueError, match="--w-render-depth is a term of T"):
        train_config(synthetic_shards, teacher_file, tmp_path / "bad", transform="off", w_render_depth=1.0)
    with pytest.raises(ValueError, match="--w-render-depth must be 0 or more"):
        train_config(synthetic_shards, teacher_file, tmp_path / "bad", w_render_depth=-1.0)


def test_teacher_without_batchnorm(tmp_path, synthetic_shards, train_config):
    class NoBN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 1, 3, padding=1)

        def forward(self, x):
            return torch.nn.functional.softplus(self.conv(x)) + 0.5

    scripted = torch.jit.script(NoBN())
    scripted.save(str(tmp_path / "nobn.pt"))
    cfg = train_config(synthetic_shards, tmp_path / "nobn.pt", tmp_path / "run", steps=2, transform="on")
    with pytest.raises(TeacherError, match="no BatchNorm layers.*--transform off"):
        Distiller(cfg)
    auto = Distiller(replace(cfg, transform="auto"))  # the default: plain KD, and the reason at start
    assert auto.transform is None and "no BatchNorm layers" in auto.describe_method()
    assert train(replace(cfg, transform="off"), show_progress=False)["steps"] == 2  # plain KD still works


def test_teacher_errors_are_clear(tmp_path):
    with pytest.raises(TeacherError, match="no such file, and not a package.module:factory"):
        load_teacher(TeacherSpec("missing.pt"))
    with pytest.raises(TeacherError, match="cannot import"):
        load_teacher(TeacherSpec("no_such_pkg.models:build"))
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(TeacherError, match="plain state dict"):
        load_teacher(TeacherSpec(str(tmp_path / "plain.pt")))
    bad = torch.jit.script(torch.nn.Conv2d(3, 2, 1))  # two output channels: not depth
    bad.save(str(tmp_path / "bad.pt"))
    with pytest.raises(TeacherError, match="expected B x 1 x H x W"):
        load_teacher(TeacherSpec(str(tmp_path / "bad.pt"), input_size=SIZE))


def test_factory_teacher_with_weights(tmp_path, monkeypatch):
    pkg = tmp_path / "myteacher"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "import torch\n"
        "def build():\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 1, 1), torch.nn.BatchNorm2d(1), torch.nn.Softplus())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    model = importlib.import_module("myteacher").build()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    t = load_teacher(TeacherSpec("myteacher:build", weights=str(tmp_path / "w.pt"), input_size=SIZE))
    assert torch.equal(t.model[0].weight, model[0].weight) and not t.training


def test_ddp_two_processes_gloo(tmp_path, synthetic_shards, teacher_file):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # --standalone: torchrun picks a free port (a fixed one collides with another run on the machine)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "distill.cli", "train", "--shards", str(synthetic_shards), "--teacher", str(teacher_file),
           "--teacher-input-size", str(SIZE), "--out", str(tmp_path / "ddp"), "--steps", "3",
           "--batch-size", "2", "--workers", "0", "--device", "cpu", "--quiet", "--log-every", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert torch.load(tmp_path / "ddp" / "student.pt", weights_only=False)["step"] == 3


def test_more_dataloader_workers_than_shards(tmp_path):
    """One shard, two workers: one worker idles, the other reads; training data keeps coming."""
    from torch.utils.data import DataLoader

    from distill.data import ShardStream
    from simgen.synthetic import write_synthetic_dataset

    ds = write_synthetic_dataset(tmp_path / "one", n=4, samples_per_shard=4)
    loader = DataLoader(ShardStream([ds], SIZE.hw, buffer=2), batch_size=2, num_workers=2)
    batches = iter(loader)
    assert [next(batches)["rgb"].shape[0] for _ in range(5)] == [2] * 5  # the stream repeats epochs


def _factory_teacher(tmp_path, monkeypatch, body):
    pkg = tmp_path / "oddteacher"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("import torch\n" + body)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_teachers_that_cannot_be_depth_are_refused(tmp_path, monkeypatch):
    _factory_teacher(tmp_path, monkeypatch,
                     "class Neg(torch.nn.Module):\n"
                     "    def forward(self, x):\n        return -1.0 - x[:, :1]\n"
                     "class Wide(torch.nn.Module):\n"
                     "    def forward(self, x):\n        return x[:, :1, :8, :].abs()\n")
    with pytest.raises(TeacherError, match="negative values.*--teacher-output relative"):
        load_teacher(TeacherSpec("oddteacher:Neg", input_size=SIZE))
    assert load_teacher(TeacherSpec("oddteacher:Neg", input_size=SIZE, output="relative")).spec.output == "relative"
    with pytest.raises(TeacherError, match="output is 64x8 for a 64x32 input: another aspect ratio"):
        load_teacher(TeacherSpec("oddteacher:Wide", input_size=SIZE))


def test_a_checkpoint_teacher_says_when_another_input_size_is_asked_for(teacher_file, capsys):
    assert load_teacher(TeacherSpec(str(teacher_file))).spec.input_size == SIZE  # its own, unasked
    t = load_teacher(TeacherSpec(str(teacher_file), input_size=Size(128, 64)))
    assert t.spec.input_size == Size(128, 64) and "it was trained at 64x32" in capsys.readouterr().out
    with pytest.raises(TeacherError, match="did you mean 64x32"):
        load_teacher(TeacherSpec(str(teacher_file), input_size=Size(32, 64)))


def test_a_run_that_fails_before_its_first_checkpoint_leaves_nothing_and_skip_corrupt_goes_on(
        tmp_path, synthetic_shards, teacher_file, train_config, capsys):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(synthetic_shards, broken)
    shard = broken / "shards" / "shard-000001.tar"
    data = bytearray(shard.read_bytes())
    data[2000] ^= 1
    shard.write_bytes(bytes(data))
    from simgen.shards import ShardError
    with pytest.raises(ShardError, match="shard-000001.tar: checksum mismatch"):
        train(train_config(broken, teacher_file, tmp_path / "run", steps=4, batch_size=8), show_progress=False)
    assert not (tmp_path / "run").exists()
    summary = train(train_config(broken, teacher_file, tmp_path / "run", steps=4, batch_size=8, skip_corrupt=True),
                    show_progress=False)
    assert summary["steps"] == 4 and "skipped" in capsys.readouterr().err


def test_resume_from_a_moved_or_respelled_run_folder(tmp_path, synthetic_shards, teacher_file, train_config):
    cfg = train_config(synthetic_shards, teacher_file, tmp_path / "run", steps=4, ckpt_every=2)
    train(replace(cfg, steps=2), show_progress=False)  # stands in for a run killed at step 2 of 4
    (tmp_path / "run" / "student.pt").unlink()
    (tmp_path / "run").rename(tmp_path / "moved")
    summary = train(replace(cfg, out=str(tmp_path / "moved") + "/", resume=True), show_progress=False)
    assert summary["steps"] == 4


def test_init_output_starts_the_student_at_the_teachers_depth(tmp_path, synthetic_shards, teacher_file, train_config):
    def median_gap(init: bool) -> float:
        cfg = train_config(synthetic_shards, teacher_file, tmp_path / f"run-{init}", lr=1e-9, transform="off",
                           mixing=False, init_output=init)
        d = Distiller(cfg)
        batch = next(iter(make_loader(cfg, d.hw)))
        d.train_step(batch)  # lr 1e-9: the step itself moves nothing
        d.student.eval()
        with torch.no_grad():
            teacher, student = d.teacher.target(batch["rgb"]).median(), d.student(batch["rgb"]).median()
        return abs(student / teacher - 1).item()

    assert median_gap(False) > 0.5 and median_gap(True) < 0.15



def test_init_student_teacher_copies_every_tensor_of_the_matching_layers(tmp_path, synthetic_shards, teacher_file,
                                                                          train_config):
    cfg = train_config(synthetic_shards, teacher_file, tmp_path / "run", student="resnet10", init_student="teacher")
    d = Distiller(cfg)
    theirs = d.teacher.model.state_dict()
    mine = d.student.state_dict()
    assert mine and all(torch.equal(v, theirs[k]) for k, v in mine.items())
    assert "encoder.layer1.1.conv1.weight" in theirs and "encoder.layer1.1.conv1.weight" not in mine
    random_start = Distiller(replace(cfg, init_student="random")).student.state_dict()
    assert not torch.equal(random_start["encoder.conv1.weight"], theirs["encoder.conv1.weight"])


def test_init_student_teacher_of_the_same_architecture_is_the_teacher(tmp_path, synthetic_shards, teacher_file,
                                                                       train_config):
    """A complete copy, BN statistics included: a resnet18 student from the resnet18 teacher predicts what it does."""
    cfg = train_config(synthetic_shards, teacher_file, tmp_path / "run", student="resnet18", init_student="teacher")
    d = Distiller(cfg)
    batch = next(iter(make_loader(cfg, d.hw)))
    d.student.eval()
    with torch.no_grad():
        assert torch.allclose(d.student(batch["rgb"]), d.teacher.target(batch["rgb"]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("change, message", [
    ({"student": "mobilenetv2"}, "have no tensor of the same name and shape"),
    ({"max_depth": 20.0}, "--min-depth 0.1 --max-depth 10"),
    ({"init_output": True}, "leave out --init-output"),
    ({"init_student": "imagenet"}, "choose one of random, teacher"),
])
def test_init_student_teacher_refuses_what_it_cannot_copy(tmp_path, synthetic_shards, teacher_file, train_config,
                                                          change, message):
    base = {"student": "resnet10", "init_student": "teacher"}
    with pytest.raises(ConfigError, match=re.escape(message)):
        Distiller(train_config(synthetic_shards, teacher_file, tmp_path / "run", **{**base, **change}))


def test_student_bn_teacher_keeps_the_teachers_statistics_while_the_student_learns(tmp_path, synthetic_shards,
                                                                                    teacher_file, train_config):
    """--student-bn teacher: after steps on sims the student's BN running statistics are still the teacher's
    (with the default, batch, they move toward the sims'; with encoder, only the decoder's move), and its
    BN scales and convolutions still learn."""
    cfg = train_config(synthetic_shards, teacher_file, tmp_path / "run", student="resnet10", init_student="teacher",
                       student_bn="teacher", mixing=False, transform="off", precision="fp32", batch_size=4,
                       lr=3e-3, warmup=1)
    batch = next(iter(make_loader(replace(cfg, workers=0), Distiller(cfg).hw)))

    def after_steps(student_bn: str) -> tuple[Distiller, dict[str, torch.Tensor]]:
        d = Distiller(replace(cfg, student_bn=student_bn, out=str(tmp_path / f"run-{student_bn}")))
        start = {k: v.clone() for k, v in d.student.state_dict().items()}
        for _ in range(3):
            d.train_step(batch)
        assert d.student.training  # the modules around the BN layers learn in training mode
        return d, start

    d, start = after_steps("teacher")
    assert "student BN on the teacher's running statistics" in d.describe_method()
    now = d.student.state_dict()
    stats = [k for k in now if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(now[k], start[k]) for k in stats)
    assert not torch.equal(now["encoder.bn1.weight"], start["encoder.bn1.weight"])
    assert not torch.equal(now["encoder.conv1.weight"], start["encoder.conv1.weight"])
    d, start = after_steps("encoder")  # the teacher's statistics in the encoder, the batch's in the decoder
    assert "student encoder BN on the teacher's running statistics" in d.describe_method()
    now = d.student.state_dict()
    assert all(torch.equal(now[k], start[k]) for k in stats if k.startswith("encoder."))
    decoder_means = [k for k in stats if k.startswith("decoder.") and k.endswith("running_mean")]
    assert decoder_means and not any(torch.equal(now[k], start[k]) for k in decoder_means)
    moved, start = after_steps("batch")
    assert not torch.equal(moved.student.state_dict()["encoder.bn1.running_mean"], start["encoder.bn1.running_mean"])
    with pytest.raises(ConfigError, match="only --init-student teacher starts it with the teacher's"):
        train_config(synthetic_shards, teacher_file, tmp_path / "bad", student_bn="teacher")
    with pytest.raises(ConfigError, match="choose one of batch, teacher, encoder"):
        train_config(synthetic_shards, teacher_file, tmp_path / "bad", student_bn="frozen")


def _hint_gap(d: Distiller, images: torch.Tensor) -> float:
    """The feature hint loss between the student and the teacher on `images`, both in eval mode."""
    taps = FeatureTap(d.student.encoder), FeatureTap(d.teacher.model.encoder)
    d.student.eval()
    with torch.no_grad():
        d.student(images), d.teacher.target(images)
    d.student.train()
    for tap in taps:
        tap.remove()
    return float(feature_hint_loss(taps[0].out, taps[1].out))


def test_feature_hints_compare_features_of_the_images_the_student_learned_on(tmp_path, synthetic_shards, teacher_file,
                                                                           train_config):
    """--w-feature with mixing and T on: after a step the teacher's tapped features are those of T's images the
    student trained on, the term is logged, and its steps bring the student's features closer to the teacher's
    than the same steps without it."""
    cfg = train_config(synthetic_shards, teacher_file, tmp_path / "run", student="resnet10", init_student="teacher",
                       w_feature=1.0, transform="on", precision="fp32", batch_size=4)
    d = Distiller(cfg)
    assert "encoder feature hints x1" in d.describe_method()
    batch = next(iter(make_loader(replace(cfg, workers=0), d.hw)))
    logs = d.train_step(batch)
    assert logs["kd_feature"] > 0
    tapped = [f.detach().clone() for f in d.feature_taps[1].out]
    with torch.no_grad():
        d.teacher.target(d.last_images["transformed"])
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(tapped, d.feature_taps[1].out, strict=True))

    def gap_after_steps(w: float) -> float:
        d = Distiller(replace(cfg, w_feature=w, mixing=False, transform="off", lr=3e-3, warmup=1,
                              out=str(tmp_path / f"run{w}")))
        for _ in range(4):
            d.train_step(batch)
        return _hint_gap(d, batch["rgb"])

    assert gap_after_steps(10.0) < 0.8 * gap_after_steps(0.0)
    with pytest.raises(ConfigError, match="--w-feature must be 0 or more"):
        train_config(synthetic_shards, teacher_file, tmp_path / "bad", w_feature=-1.0)
    with pytest.raises(ConfigError, match="--w-feature: the student's encoder features"):
        Distiller(train_config(synthetic_shards, teacher_file, tmp_path / "bad", w_feature=1.0))  # mobilenetv2


def test_hints_at_all_levels_also_match_the_decoder_blocks(tmp_path, synthetic_shards, teacher_file, train_config):
    """--hint-levels all: the term compares the encoder's five maps and the decoder's five blocks, and its
    steps bring the student's decoder features closer to the teacher's than encoder hints alone do."""
    cfg = train_config(synthetic_shards, teacher_file, tmp_path / "run", student="resnet10", init_student="teacher",
                       w_feature=10.0, hint_levels="all", mixing=False, transform="off", precision="fp32",
                       batch_size=4, lr=3e-3, warmup=1)
    d = Distiller(cfg)
    assert "encoder and decoder feature hints x10" in d.describe_method()
    batch = next(iter(make_loader(replace(cfg, workers=0), d.hw)))
    d.train_step(batch)
    assert len(d.feature_taps[0].out) == len(d.feature_taps[1].out) == 10

    def decoder_gap_after_steps(levels: str) -> float:
        d = Distiller(replace(cfg, hint_levels=levels, out=str(tmp_path / f"run-{levels}")))
        for _ in range(4):
            d.train_step(batch)
        taps = FeatureTap(*d.student.decoder.blocks), FeatureTap(*d.teacher.model.decoder.blocks)
        d.student.eval()
        with torch.no_grad():
            d.student(batch["rgb"]), d.teacher.target(batch["rgb"])
        return float(feature_hint_loss(taps[0].out, taps[1].out))

    assert decoder_gap_after_steps("all") < 0.8 * decoder_gap_after_steps("encoder")
    with pytest.raises(ConfigError, match="give them a weight with --w-feature"):
        train_config(synthetic_shards, teacher_file, tmp_path / "bad", hint_levels="all")


def test_transform_share_sends_only_that_part_of_the_batch_through_t(tmp_path, synthetic_shards, teacher_file,
                                                                    train_config):
    """--transform-share 0.5: the student learns on T's images for the first half of the batch and on the
    images as they came for the rest, against the teacher's depth on exactly those images."""
    cfg = train_config(synthetic_shards, teacher_file, tmp_path / "run", mixing=False, transform="on",
                       transform_share=0.5, precision="fp32", batch_size=4, channels_last=False)
    d = Distiller(cfg)
    assert "student sees 0.5 of each batch through T" in d.describe_method()
    batch = next(iter(make_loader(replace(cfg, workers=0), d.hw)))
    d.transform_fwd = lambda x: (1 - x) + 0 * d.transform(x)  # a T whose change is plain to see
    seen = {}
    d.student.register_forward_hook(lambda m, inputs, out: seen.update(student=inputs[0].detach().clone()))
    d.teacher.model.register_forward_hook(lambda m, inputs, out: seen.update(teacher=inputs[0].detach().clone()))
    d.train_step(batch)
    rgb = batch["rgb"].float()
    assert torch.allclose(seen["student"], torch.cat([1 - rgb[:2], rgb[2:]]), atol=1e-6)
    assert torch.equal(seen["teacher"], seen["student"])  # the KD target is the teacher's depth on those images
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="--transform-share must be in"):
            train_config(synthetic_shards, teacher_file, tmp_path / "bad", transform_share=bad)
