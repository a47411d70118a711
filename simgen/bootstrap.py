"""Run BlenderProc 2.8.0 in-process on the PyPI `bpy` module: the only place that knows how.

`blenderproc run` would download a Blender build and pip-install into it; the machines this
project targets have no internet, and Blender 4.2 is on PyPI as `bpy` (Python 3.11 only).
BlenderProc's `__init__` has two modes: inside Blender it removes site-packages from sys.path and
pip-installs its dependencies; outside it only allows the CLI. We take a third way:

1. declare we are "in a run script", so `import blenderproc` does nothing but succeed;
2. point its temp dir at ours and import its API modules ourselves (its Blender-side
   dependencies come from our own install, pinned as in BlenderProc's DefaultConfig);
3. initialise as `bproc.init()` does, minus the UI-language switch: the PyPI `bpy` ships no
   locales and the switch is pointless headless.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
import tempfile
import types
from collections.abc import Iterator

_BPROC: types.SimpleNamespace | None = None


class BlenderUnavailable(RuntimeError):
    """bpy/BlenderProc cannot be used here; the message says how to fix it."""


def check_render_environment() -> None:
    """Fail fast, with a fix, before any worker starts."""
    if sys.version_info[:2] != (3, 11):
        raise BlenderUnavailable(
            f"rendering needs Python 3.11 (the PyPI bpy 4.2 exists only for 3.11); this is "
            f"{sys.version_info[0]}.{sys.version_info[1]}. Create the venv with python3.11.")
    import importlib.util
    for module, package in (("bpy", "bpy==4.2.*"), ("blenderproc", "blenderproc==2.8.0")):
        if importlib.util.find_spec(module) is None:
            raise BlenderUnavailable(
                f"`{module}` is not installed; install the render extra: pip install -e '.[render]' "
                f"(or bash scripts/setup.sh), which pins {package}")


@contextlib.contextmanager
def _blender_session_dir_inside(temp_dir: str) -> Iterator[None]:
    """While bpy is first imported, TMPDIR points at temp_dir. Blender makes its session dir
    (blender_XXXXXX) under TMPDIR at import and, as a module, leaves it behind once it has rendered:
    inside temp_dir it goes with it at exit. TMPDIR is restored for everything else."""
    previous = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = temp_dir
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = previous


def import_blenderproc() -> types.SimpleNamespace:
    """BlenderProc's API as a namespace (bproc.object, bproc.renderer, ...), initialised once per process.

    BlenderProc renders into files in a temp dir and reads them back; each process gets its own,
    removed at exit."""
    global _BPROC
    if _BPROC is not None:
        return _BPROC
    check_render_environment()
    temp_dir = tempfile.mkdtemp(prefix="simgen-bproc-")
    atexit.register(shutil.rmtree, temp_dir, ignore_errors=True)
    os.environ["OUTSIDE_OF_THE_INTERNAL_BLENDER_PYTHON_ENVIRONMENT_BUT_IN_RUN_SCRIPT"] = "1"
    os.environ.pop("INSIDE_OF_THE_INTERNAL_BLENDER_PYTHON_ENVIRONMENT", None)
    with _blender_session_dir_inside(temp_dir):
        import blenderproc  # noqa: F401  (registers the package; imports nothing else in this mode)
        from blenderproc.python.utility.SetupUtility import SetupUtility

        SetupUtility.setup_utility_paths(temp_dir)
        import bpy
    from blenderproc.api import (camera, lighting, loader, material, math, object, renderer, types as btypes,
                                 utility, world)
    from blenderproc.python.renderer import RendererUtility
    from blenderproc.python.utility import Initializer
    from blenderproc.python.utility.GlobalStorage import GlobalStorage

    # bproc.init() without the language switch.
    Initializer.clean_up(clean_up_camera=True)
    bpy.context.scene.render.engine = "CYCLES"
    RendererUtility.set_render_devices()
    Initializer._Initializer.set_default_parameters()
    GlobalStorage.add("bproc_init_complete", True)

    _BPROC = types.SimpleNamespace(
        bpy=bpy, camera=camera, lighting=lighting, loader=loader, material=material, math=math,
        object=object, renderer=renderer, types=btypes, utility=utility, world=world,
        clean_up=Initializer.clean_up,
    )
    return _BPROC
