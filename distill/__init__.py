"""distill: data-free distillation of a depth teacher into a small student, from simgen shards.

`import distill` never imports bpy; shards are read through `simgen.shards` only.
"""

import os

__version__ = "0.1.0"

# OpenMP threads that spin while they wait hold a core that another process (a render, the
# DataLoader workers) needs: beside one busy process a 2-core training step was 2.9x slower with
# spinning than with passive waiting (docs/distill.md, Speed). libgomp reads this once, when torch
# loads it, so it is set here, before any distill module imports torch; scripts import distill
# first. A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
