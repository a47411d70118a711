"""distill: data-free distillation of a depth teacher into a small student, from simgen shards.

Not built yet: the training half is the next issue. `import distill` must never import bpy.
"""

__version__ = "0.1.0"
