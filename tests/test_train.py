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

from distill.layers import FeatureTap, feature_hint_loss
from distill.networks import build_depth_model
from distill.teacher import TeacherError, TeacherSpec, load_teacher
from distill.train import Distiller, TrainConfig, make_loader, train
from simgen.options import ConfigError, Size

from conftest import SIZE


def student_error(student, teacher, images):
    with torch.no_grad():
        t = teacher.target(images)
        return ((student(images) - t).abs() / t).mean().item()


def test_a_run_writes_its_student_config_and_logs(tmp_path, synthetic_shards, teacher_file, train_config):
    cfg = train_config(synthetic_shards, teacher_file, tmp_path / "run", steps=4, transform="on", mixing=True)
    summary = train(cfg, show_progress=False)
    assert summary["steps"] == 4
    ckpt = torch.load(tmp_path / "run" / "student.pt", weights_only=False)
    assert ckpt["step"] == 4 and set(ckpt["model"]) == set(build_depth_model("mobilenetv2").state_dict())
    assert (tmp_path / "run" / "tb").is_dir() and json.loads((tmp_path / "run" / "config.json").read_text())["steps"] == 4


def _fixed_batch(d: Distiller) -> dict[str, torch.Tensor]:
    return next(iter(make_loader(replace(d.cfg, workers=0), d.hw)))


def test_the_student_step_lowers_its_kd_loss_and_reaches_every_layer(tmp_path, synthetic_shards, teacher_file,
                                                                     train_config):
    """The mechanism of KD, in fp32 on a fixed batch: the loss has its three terms, its gradients reach every
    parameter of the student, and one step lowers it. Measured on an AMD EPYC (avx512_bf16, no AMX): 3.26 ->
    2.97 (0.91x; 0.97x at lr 3e-3, 0.99x at 1e-3). A first AdamW step is a first-order descent step: fp32
    kernels of another CPU change the loss in the 6th digit, far inside the 0.96x asserted."""
    d = Distiller(train_config(synthetic_shards, teacher_file, tmp_path / "run", transform="off", mixing=False,
                               precision="fp32", lr=1e-2, warmup=1))
    batch = _fixed_batch(d)
    with torch.no_grad():
        target = d.teacher.target(batch["rgb"])

    def kd() -> dict[str, torch.Tensor]:
        d._student_learns()
        return d.student_loss(batch["rgb"], target)[0]

    losses = kd()
    assert {"depth", "grad", "normal", "total"} <= set(losses) and all(v > 0 for v in losses.values())
    losses["total"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d.student.parameters())
    before = losses["total"].item()
    d.train_step(batch)
    with torch.no_grad():
        after = float(kd()["total"])
    assert after < 0.96 * before, (before, after)


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
    # D7: the global RNG ends where the uninterrupted run's does (the loader's seed is drawn before the saved
    # state is restored), so any randomness of the main process keeps its order across a resume
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


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
    from distill.cli import parse_train_config

    def parse(*argv):
        return parse_train_config(list(argv))

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


def test_the_transform_step_lowers_the_bn_term_and_reaches_t(tmp_path, synthetic_shards, teacher_file, train_config):
    """The mechanism of T, in fp32 on a fixed batch of dark, low-contrast images (far from what the teacher's BN
    layers saw): T's loss holds the BN term of every hooked layer, its gradients reach every layer of T (the
    zero-initialised last layer first), and one T update lowers the BN term. Measured on an AMD EPYC: 26.8 ->
    25.8 (0.964x) at lr 1e-2 (0.990x at 3e-3). fp32 kernels of another CPU move these in the 6th digit, far
    inside the 0.985x asserted."""
    d = Distiller(train_config(synthetic_shards, teacher_file, tmp_path / "run", mixing=False, transform="on",
                               lr_transform=1e-2, warmup=1, precision="fp32"))
    batch = _fixed_batch(d)
    dark = 0.1 + 0.3 * batch["rgb"]
    assert len(d.bn_hooks) >= 2 and "transformation network" in d.describe_method()
    logs: dict[str, float] = {}
    loss, _, _ = d.transform_loss(dark, logs)
    assert logs["bn"] > 0 and logs["content"] == 0  # T starts as the identity
    loss.backward()
    assert d.transform.body[-1].weight.grad.abs().sum() > 0
    d.transform.zero_grad()
    before = logs["bn"]
    d._transform_step(dark, {})
    with torch.no_grad():
        d.transform_loss(dark, logs)
    assert logs["bn"] < 0.985 * before, (before, logs["bn"])


def test_bad_choices_are_refused_from_each_options_own_choices(tmp_path, synthetic_shards, teacher_file, train_config):
    for field, bad in (("bn_loss", "mean"), ("student", "vgg"), ("precision", "fp8"), ("init_student", "imagenet")):
        with pytest.raises(ConfigError, match=f"--{field.replace('_', '-')} '{bad}': choose one of"):
            train_config(synthetic_shards, teacher_file, tmp_path / "run", **{field: bad})


@pytest.mark.parametrize("retired, value", [("transform_net", "photometric"), ("transform_share", 0.5),
                                            ("bn_layers", "late"), ("w_tv", 10.0), ("hint_levels", "all"),
                                            ("init_output", True), ("student_bn", "encoder"), ("w_adv", 1.0),
                                            ("mix", {"depth_aware": True})])
def test_a_config_or_checkpoint_with_a_retired_lever_on_fails_naming_the_commit(tmp_path, synthetic_shards,
                                                                                 teacher_file, train_config, retired,
                                                                                 value):
    """A retired lever (docs/tries.md) set to anything but the value at which it did nothing is refused in one
    line naming the commit that still runs it, from --config and from a run's checkpoint; at that value an old
    config still loads."""
    from distill.cli import parse_train_config
    from distill.config import RETIRED_AT

    cfg = train_config(synthetic_shards, teacher_file, tmp_path / "run")
    old = {**asdict(cfg), "transform_net": "residual", "w_tv": 0.0}  # an old run's config.json: every field
    (tmp_path / "old.json").write_text(json.dumps(old))
    parse = lambda *argv: parse_train_config(list(argv))  # noqa: E731
    assert parse("--config", str(tmp_path / "old.json")) == cfg
    (tmp_path / "bad.json").write_text(json.dumps({**old, retired: value}))
    with pytest.raises(ConfigError, match=f"--config .*bad.json: .*was retired.*commit {RETIRED_AT}") as e:
        parse("--config", str(tmp_path / "bad.json"))
    assert "\n" not in str(e.value)
    train(cfg, show_progress=False)
    ckpt = torch.load(tmp_path / "run" / "student.pt", weights_only=False)
    ckpt["config"][retired] = value
    torch.save(ckpt, tmp_path / "run" / "student.pt")
    with pytest.raises(ConfigError, match=f"was retired.*commit {RETIRED_AT}"):
        train(cfg, show_progress=False)


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
    (with the default, batch, they move toward the sims'), and its
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
    moved, start = after_steps("batch")
    assert not torch.equal(moved.student.state_dict()["encoder.bn1.running_mean"], start["encoder.bn1.running_mean"])
    with pytest.raises(ConfigError, match="only --init-student teacher starts it with the teacher's"):
        train_config(synthetic_shards, teacher_file, tmp_path / "bad", student_bn="teacher")
    with pytest.raises(ConfigError, match="choose one of batch, teacher"):
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
    student trained on, the term is logged, its gradients reach the student's encoder (not the decoder) and a
    step lowers it."""
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

    # the term's gradients reach the student's encoder only, and one step (fp32, fixed batch) lowers it
    d = Distiller(replace(cfg, w_feature=10.0, mixing=False, transform="off", lr=1e-3, warmup=1,
                          out=str(tmp_path / "run10")))
    with torch.no_grad():
        target = d.teacher.target(batch["rgb"])
    losses, _ = d.student_loss(batch["rgb"], target)
    losses["feature"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d.student.encoder.parameters())
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in d.student.decoder.parameters())
    d.student.zero_grad()
    before = _hint_gap(d, batch["rgb"])
    d.train_step(batch)
    after = _hint_gap(d, batch["rgb"])
    # measured on an AMD EPYC: 0.360 -> 0.299 (0.83x); a first-order step, which another CPU's fp32 kernels
    # change in the 6th digit
    assert after < 0.95 * before, (before, after)
    with pytest.raises(ConfigError, match="--w-feature must be 0 or more"):
        train_config(synthetic_shards, teacher_file, tmp_path / "bad", w_feature=-1.0)
    with pytest.raises(ConfigError, match="--w-feature: the student's encoder features"):
        Distiller(train_config(synthetic_shards, teacher_file, tmp_path / "bad", w_feature=1.0))  # mobilenetv2


