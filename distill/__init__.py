"""distill: data-free distillation of a depth teacher into a small student, from simgen shards.

`import distill` never imports bpy; shards are read through `simgen.shards` only.
"""

__version__ = "0.1.0"
