"""simgen: randomized indoor/outdoor scenes rendered with BlenderProc into RGB-D shards.

`import simgen` imports neither bpy nor torch; only `simgen.worker` (in render processes) imports bpy.
"""

__version__ = "0.1.0"
