import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HAVE_BPY = importlib.util.find_spec("bpy") is not None and importlib.util.find_spec("blenderproc") is not None


def pytest_collection_modifyitems(config, items):
    if HAVE_BPY:
        return
    skip = pytest.mark.skip(reason="needs the render extra (bpy, blenderproc): pip install -e '.[render]'")
    for item in items:
        if "render" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def simgen_cmd():
    """The CLI as a subprocess, the way users run it."""
    return [sys.executable, "-m", "simgen.cli"]


@pytest.fixture(scope="session")
def synthetic_shards(tmp_path_factory):
    from simgen.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "ds")
