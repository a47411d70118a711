import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HAVE_BPY = importlib.util.find_spec("bpy") is not None and importlib.util.find_spec("blenderproc") is not None


# Tests that train a teacher or render are slow (seconds to a minute each): `pytest -m "not slow"`
# leaves them out for a quick check while editing; CI runs everything.
SLOW_FIXTURES = {"teacher_file"}


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs the render extra (bpy, blenderproc): pip install -e '.[render]'")
    for item in items:
        if "render" in item.keywords or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        if "render" in item.keywords and not HAVE_BPY:
            item.add_marker(skip)


def make_sample(i, h=12, w=16, seed=0):
    """A random sample of the shard format (index i), reproducible from (seed, i)."""
    import numpy as np

    from simgen import shards

    rng = np.random.default_rng(seed + i)
    depth = rng.uniform(0.3, 9.0, (h, w)).astype(np.float32)
    depth[0, :3] = 0  # invalid pixels stay invalid
    return shards.Sample(i, rng.integers(0, 256, (h, w, 3), dtype=np.uint8), depth,
                         rng.integers(0, 40, (h, w)).astype(np.uint16), {"index": i, "instances": []})


@pytest.fixture
def simgen_cmd():
    """The CLI as a subprocess, the way users run it."""
    return [sys.executable, "-m", "simgen.cli"]


@pytest.fixture(scope="session")
def synthetic_shards(tmp_path_factory):
    from simgen.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "ds")


# ------------------------------------------------------------------ distillation on tiny data

# Teacher and student input of the training tests: WIDTHxHEIGHT, as everywhere (SIZE.hw for tensors).
from simgen.options import Size  # noqa: E402

SIZE = Size(64, 32)


@pytest.fixture(scope="session")
def teacher_file(tmp_path_factory, synthetic_shards):
    """A tiny teacher fitted (supervised, `distill fit-teacher`) on the synthetic scenes. Fitted in fp32, so that
    it is the same teacher on every CPU: fitted with bf16 autocast it would depend on the CPU's bf16 kernels
    (Intel AMX and AMD avx512_bf16 differ), and so would every test that reads it."""
    from distill.fit_teacher import FitConfig, fit_teacher

    path = tmp_path_factory.mktemp("teacher") / "teacher.ckpt"
    fit_teacher(FitConfig(data=str(synthetic_shards), out=str(path), arch="resnet18", input_size=SIZE, split=None,
                          steps=60, batch_size=8, lr=3e-3, workers=0, device="cpu", precision="fp32"),
                show_progress=False)
    return path


@pytest.fixture
def train_config():
    """make(shards, teacher, out, **overrides) -> a TrainConfig of a few CPU steps."""
    from dataclasses import replace

    from distill.train import TrainConfig

    def make(shards, teacher, out, **kw):
        base = TrainConfig(shards=[str(shards)], out=str(out), teacher={"source": str(teacher), "input_size": SIZE},
                           student="mobilenetv2", steps=6, batch_size=4, warmup=2, workers=0, log_every=2,
                           ckpt_every=3, device="cpu")
        return replace(base, **kw)

    return make


# ------------------------------------------------------------------ object storage

@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server on 127.0.0.1 with credentials checked; stopped when the session ends."""
    pytest.importorskip("s3fs", reason="needs the cloud extra: pip install -e '.[cloud]'")
    pytest.importorskip("moto.server", reason="needs moto[server] (the test extra)")
    from simgen.local_s3 import S3Server

    server = S3Server(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch):
    """A new bucket on the test server, with this process's AWS_* variables pointing at it. Returns s3://BUCKET."""
    import s3fs

    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()  # a client made under other variables must not be reused
    yield f"s3://{s3_server.bucket()}"
    s3fs.S3FileSystem.clear_instance_cache()
