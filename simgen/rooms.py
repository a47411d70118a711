"""The indoor scene catalogue: the room types people film, what each holds, and where their cameras
stand. Every range a room or camera is drawn from is a named constant here; simgen/indoor.py builds
rooms from them and simgen/scene.py places the cameras.
"""

from __future__ import annotations

WALL_THICKNESS = 0.1
DOOR_WIDTH, DOOR_HEIGHT = (0.8, 1.0), (2.0, 2.2)
DOOR_CLOSED_P = 0.7         # else the opening shows what lies beyond (the world background)
DOOR_CLEARANCE = 1.0        # metres in front of a door kept free of furniture
WINDOW_WIDTH, WINDOW_SILL, WINDOW_HEIGHT = (0.8, 2.0), (0.75, 1.0), (0.9, 1.6)
CURTAIN_P = 0.5
FRAME_WIDTH, FRAME_DEPTH = 0.06, 0.02
SKIRTING_HEIGHT, SKIRTING_DEPTH = 0.08, 0.015
PICTURE_WIDTH, PICTURE_HEIGHT, PICTURE_CENTRE_Z = (0.3, 1.2), (0.25, 0.9), (1.3, 1.7)
RUG_SIZE = ((1.2, 3.0), (0.8, 2.2))
COUNTER_DEPTH, COUNTER_HEIGHT, WORKTOP = 0.62, 0.86, 0.04
WALL_CABINET_Z, WALL_CABINET_DEPTH, WALL_CABINET_HEIGHT = (1.4, 1.55), 0.35, (0.6, 0.8)
LIGHT_PANELS = ((0.6, 0.6), (1.2, 0.25))  # ceiling panel sizes (m)
PANEL_GLOW = (3.0, 8.0)     # emission strength of a ceiling panel's face
SUN_ELEVATION_DEG, SUN_ENERGY = (15.0, 50.0), (2.0, 5.0)
# Colour temperatures (K). Cameras white-balance, so frames show little of a lamp's tint: real
# frames average a neutral grey (R/G/B 0.52/0.47/0.46); 2700 K lamps made the renders orange.
LAMP_KELVIN, DAYLIGHT_KELVIN = (3800.0, 6500.0), (5500.0, 6500.0)
# A room's light scaled by 2**stops: cameras see rooms from dim to bright (real frames' mean grey
# varies with a spread of 0.10 between images).
EXPOSURE_STOPS = (-2.5, -0.5)

OTHER = "*"  # furniture entry: any floor or wall mesh of a category no room type names

# size: ranges of width (x), depth (y) and height in metres. furniture: (category, min, max), placed
# in order; a table or desk gets `chairs` chairs (min, max). clutter: small objects per supporting
# top. grid: classroom rows x columns of tables. counters: kitchen counter runs along walls.
ROOM_TYPES: dict[str, dict] = {
    "office": dict(size=((3.5, 7.0), (3.5, 8.0), (2.5, 3.2)), furniture=(("desk", 2, 4), ("shelf", 1, 3),
                   ("cabinet", 0, 2), ("plant", 0, 2), ("box", 0, 2)), chairs=(1, 1), clutter=(1, 4),
                   doors=(1, 1), windows=(0, 2), rug_p=0.1, pictures=(0, 2), counters=(0, 0), grid=None,
                   lights=(2, 4)),
    "kitchen": dict(size=((2.6, 5.0), (3.0, 5.5), (2.4, 2.9)), furniture=(("table", 0, 1), ("round_table", 0, 1),
                    ("shelf", 0, 1), ("plant", 0, 1)), chairs=(2, 4), clutter=(2, 6), doors=(1, 1),
                    windows=(0, 1), rug_p=0.0, pictures=(0, 1), counters=(1, 2), grid=None, lights=(1, 2)),
    "bedroom": dict(size=((3.0, 5.0), (3.0, 5.5), (2.4, 2.9)), furniture=(("bed", 1, 1), ("cabinet", 1, 2),
                    ("shelf", 0, 1), ("desk", 0, 1), ("lamp", 0, 1), ("plant", 0, 1), ("box", 0, 1)),
                    chairs=(0, 1), clutter=(1, 3), doors=(1, 1), windows=(1, 2), rug_p=0.6, pictures=(1, 3),
                    counters=(0, 0), grid=None, lights=(1, 1)),
    "living": dict(size=((3.5, 7.0), (3.5, 7.0), (2.4, 3.0)), furniture=(("sofa", 1, 2), ("table", 0, 1),
                   ("round_table", 0, 1), ("shelf", 1, 2), ("cabinet", 0, 2), ("lamp", 0, 2), ("plant", 0, 2),
                   ("chair", 0, 2)), chairs=(0, 2), clutter=(1, 3), doors=(1, 2), windows=(1, 3), rug_p=0.7,
                   pictures=(1, 4), counters=(0, 0), grid=None, lights=(1, 3)),
    "corridor": dict(size=((1.4, 2.4), (6.0, 12.0), (2.4, 3.0)), furniture=(("cabinet", 0, 1), ("plant", 0, 1),
                     ("box", 0, 2), ("chair", 0, 1)), chairs=(0, 0), clutter=(0, 2), doors=(2, 5),
                     windows=(0, 1), rug_p=0.1, pictures=(0, 3), counters=(0, 0), grid=None, lights=(2, 4)),
    "classroom": dict(size=((6.0, 9.0), (6.0, 9.5), (2.8, 3.4)), furniture=(("desk", 1, 1), ("shelf", 1, 2),
                      ("cabinet", 0, 2), ("plant", 0, 1)), chairs=(1, 1), clutter=(0, 2), doors=(1, 2),
                      windows=(2, 4), rug_p=0.0, pictures=(1, 3), counters=(0, 0), grid=((2, 4), (2, 4)),
                      lights=(3, 4)),
    # The first round's room: any furniture anywhere, sized by floor area (AREA_PER_OBJECT).
    "generic": dict(size=((3.0, 8.0), (3.0, 9.0), (2.4, 3.2)), furniture=((OTHER, 2, 6),), chairs=(0, 0),
                    clutter=(1, 3), doors=(0, 1), windows=(0, 1), rug_p=0.3, pictures=(0, 2), counters=(0, 0),
                    grid=None, lights=(1, 3)),
}
DEFAULT_ROOMS = ("office", "kitchen", "bedroom", "living", "corridor", "classroom")
AREA_PER_OBJECT = 3.5       # generic rooms: one extra piece of furniture per this many square metres
USER_EXTRAS = (0, 2)        # meshes of categories no room type names, per room
ALIGNED_P = 0.7             # floor furniture turned to the walls (90-degree steps), else any yaw
AGAINST_WALL_P = 0.3        # floor furniture pushed against a wall anyway

# Camera viewpoints of indoor captures: camera height above the floor (m) and pitch (degrees,
# negative looks down). tabletop looks at a table, desk or counter top from `distance` (m).
VIEWPOINTS: dict[str, dict] = {
    "handheld": dict(height=(1.1, 1.8), pitch=(-35.0, 5.0)),      # a person filming (NYU, ScanNet, 7-Scenes)
    "robot": dict(height=(0.5, 1.2), pitch=(-15.0, 10.0)),        # a mobile robot's camera (TUM, corridors)
    "tabletop": dict(distance=(0.45, 1.1), pitch=(-80.0, -35.0)),  # desk and table-top close-ups
    "any": dict(height=(0.9, 1.9), pitch=(-40.0, 10.0)),          # the first round's range
}
VIEWPOINT_MIX = {"handheld": 0.7, "robot": 0.1, "tabletop": 0.2}  # --viewpoint mixed
