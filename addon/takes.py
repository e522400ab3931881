"""Takes: every capture keyed onto a head rig keeps its own actions, so the next capture adds a take instead of
overwriting the last one, and the animator can go back to any of them.

A take holds one action per animated datablock (the rig's bones, its mesh's shape keys and, for a lens that
changes per frame, the capture camera), each with a fake user so that Blender keeps the takes not showing,
plus what the scene needs to show the take as it was keyed: the camera's intrinsics, the scene's frame
rate and range, the actor's face shape, the footage and the capture file. Blender data only; the operators
and the panel are in takes_ui.
"""
from __future__ import annotations

import os
from typing import Callable

import bpy
import numpy as np
from bpy.props import (CollectionProperty, FloatProperty, IntProperty, IntVectorProperty, PointerProperty,
                       StringProperty)

from ..core import capture_file
from ..core.errors import KinesicsError
from . import keyframes
from .camera_space import ensure_camera
from .retarget import capture_row_at

EARLIER = "Earlier capture"  # a rig keyed before it had takes: its keys become this take, not lost
_ACTION_LABELS = {"bones": "Head", "shape_keys": "Expressions", "lens": "Lens"}


class KINESICS_PG_take(bpy.types.PropertyGroup):
    bones: PointerProperty(type=bpy.types.Action, name="Head")
    shape_keys: PointerProperty(type=bpy.types.Action, name="Expressions")
    lens: PointerProperty(type=bpy.types.Action, name="Lens")
    frame_start: IntProperty(name="Start")
    frame_end: IntProperty(name="End")
    fps: IntProperty(name="Frame Rate", default=0)  # 0: the scene's rate was not recorded (an earlier capture)
    fps_base: FloatProperty(default=1.0)
    image_size: IntVectorProperty(size=2)            # (0, 0): no camera recorded
    focal_px: FloatProperty()
    cx: FloatProperty()
    cy: FloatProperty()
    footage: StringProperty(name="Footage", subtype='FILE_PATH')
    capture_file: StringProperty(name="Capture File", subtype='FILE_PATH')


class KINESICS_PG_rig(bpy.types.PropertyGroup):
    takes: CollectionProperty(type=KINESICS_PG_take)
    active_take: IntProperty(name="Take", description="The take selected in the list")


def _animated(rig_obj: bpy.types.Object) -> dict[str, bpy.types.ID | None]:
    """The datablocks a take animates, by take attribute."""
    camera = rig_obj.get("kinesics_camera")
    return {"bones": rig_obj, "shape_keys": rig_obj["kinesics_mesh"].data.shape_keys,
            "lens": camera.data if camera is not None else None}


def _assign(id_data: bpy.types.ID | None, action: bpy.types.Action | None) -> None:
    if id_data is None:
        return
    anim = id_data.animation_data or id_data.animation_data_create()
    anim.action = action
    if action is not None and anim.action_slot is None and len(action.slots):
        anim.action_slot = action.slots[0]


def _action(id_data: bpy.types.ID | None) -> bpy.types.Action | None:
    anim = id_data.animation_data if id_data is not None else None
    return anim.action if anim is not None else None


def current(rig_obj: bpy.types.Object) -> int | None:
    """Index of the take whose keys the rig shows, or None."""
    action = _action(rig_obj)
    return next((i for i, t in enumerate(rig_obj.kinesics.takes) if action is not None and t.bones == action), None)


def note(rig_obj: bpy.types.Object, **values: str | int) -> None:
    """Note on the showing take where it came from (footage, capture_file) and the frames it spans (frame_start,
    frame_end); nothing when no take is showing."""
    index = current(rig_obj)
    if index is not None:
        for key, value in values.items():
            setattr(rig_obj.kinesics.takes[index], key, value)


def showing_capture(rig_obj: bpy.types.Object, then: str) -> str:
    """The capture file (absolute path) of the take the rig shows. Raises KinesicsError, ending with `then` (what
    to do once there is one), when the rig shows no take with a saved capture."""
    index = current(rig_obj)
    path = bpy.path.abspath(rig_obj.kinesics.takes[index].capture_file) if index is not None else ""
    if not path or not os.path.isfile(path):
        raise KinesicsError(f"The rig shows no take with a saved capture: capture (or apply a capture file) first, "
                            f"then {then}.")
    return path


def footage_frame_at(scene: bpy.types.Scene, rig_obj: bpy.types.Object, scene_frame: float) -> int:
    """The footage frame the rig's showing take keyed nearest to `scene_frame`. Raises KinesicsError when the rig
    shows no take with a capture file."""
    capture = capture_file.load(showing_capture(rig_obj, "go to a frame where the face is at rest"))
    take = rig_obj.kinesics.takes[current(rig_obj)]
    scene_fps = take.fps / take.fps_base if take.fps else scene.render.fps / scene.render.fps_base
    return int(capture["frame_index"][capture_row_at(capture, scene_fps, keyframes.FIRST_FRAME, scene_frame)])


def retarget_from(scene: bpy.types.Scene, path: str) -> None:
    """The Retarget panel reads the capture of the take the rig shows (a capture file that exists)."""
    if path and os.path.exists(bpy.path.abspath(path)):
        scene.kinesics_retarget.source = path


def _unique(rig_obj: bpy.types.Object, name: str) -> str:
    names = {t.name for t in rig_obj.kinesics.takes}
    n, unique = 1, name
    while unique in names:
        n += 1
        unique = f"{name} {n}"
    return unique


def _adopt_earlier_keys(rig_obj: bpy.types.Object) -> None:
    """Keys a rig already shows that no take holds (keyed by an older Kinesics, or by hand) become a take."""
    if current(rig_obj) is not None or _action(rig_obj) is None:
        return
    take = rig_obj.kinesics.takes.add()
    take.name = _unique(rig_obj, EARLIER)
    for attr, id_data in _animated(rig_obj).items():
        action = _action(id_data)
        if action is not None:
            action.use_fake_user = True
            setattr(take, attr, action)
    take.frame_start, take.frame_end = (int(v) for v in take.bones.frame_range)


def start(scene: bpy.types.Scene, rig_obj: bpy.types.Object, header: dict, name: str) -> KINESICS_PG_take:
    """A new take named after `name` for the capture described by `header` (fps, image_size, focal_px, cx,
    cy), made current with fresh, empty actions; the rig's earlier takes are kept as they are."""
    _adopt_earlier_keys(rig_obj)
    take = rig_obj.kinesics.takes.add()
    take.name = _unique(rig_obj, name or "Capture")
    per_frame_lens = np.ndim(header["focal_px"]) == 1
    for attr, id_data in _animated(rig_obj).items():
        if id_data is not None and (attr != "lens" or per_frame_lens):
            setattr(take, attr, keyframes.new_action(id_data, f"{take.name} {_ACTION_LABELS[attr]}"))
        else:
            _assign(id_data, None)
    take.fps, take.fps_base = scene.render.fps, scene.render.fps_base
    take.image_size = [int(v) for v in np.asarray(header["image_size"]).ravel()[:2]]
    take.focal_px = float(np.asarray(header["focal_px"], np.float64).ravel()[0])
    take.cx, take.cy = float(header["cx"]), float(header["cy"])
    take["shape"] = np.asarray(header["shape"], np.float64).tolist()
    rig_obj.kinesics.active_take = len(rig_obj.kinesics.takes) - 1
    return take


def take_shape(take: KINESICS_PG_take) -> np.ndarray | None:
    """The face shape the take was keyed with, or None when not recorded."""
    return np.asarray(take["shape"], np.float64) if "shape" in take else None


def use(scene: bpy.types.Scene, rig_obj: bpy.types.Object, index: int,
        reshape: Callable[[np.ndarray], None] | None = None) -> KINESICS_PG_take:
    """Show take `index`: assign its actions, and give the camera, the scene's frame rate and range, and the
    rig's face shape (through `reshape(shape)`, when it differs from the rig's) back as they were keyed."""
    take = rig_obj.kinesics.takes[index]
    shape = take_shape(take)
    if reshape is not None and shape is not None:
        rig_shape = np.asarray(rig_obj["kinesics_shape"], np.float64)
        if rig_shape.shape != shape.shape or not np.allclose(rig_shape, shape, atol=1e-7):
            reshape(shape)
    for attr, id_data in _animated(rig_obj).items():
        _assign(id_data, getattr(take, attr))
    camera = rig_obj.get("kinesics_camera")
    if camera is not None and take.image_size[0] > 0:
        ensure_camera(scene, camera.name, tuple(take.image_size), take.focal_px, take.cx, take.cy)
    if take.fps > 0:
        scene.render.fps, scene.render.fps_base = take.fps, take.fps_base
    if take.frame_end > 0 and take.frame_end >= take.frame_start:
        scene.frame_start, scene.frame_end = take.frame_start, take.frame_end
    rig_obj.kinesics.active_take = index
    return take


def remove(rig_obj: bpy.types.Object, index: int) -> None:
    """Delete take `index` and its actions. When it was showing, the rig is left without keys."""
    take = rig_obj.kinesics.takes[index]
    if current(rig_obj) == index:
        for id_data in _animated(rig_obj).values():
            _assign(id_data, None)
    for attr in _ACTION_LABELS:
        action = getattr(take, attr)
        if action is not None:
            bpy.data.actions.remove(action)
    rig_obj.kinesics.takes.remove(index)
    rig_obj.kinesics.active_take = max(0, min(index, len(rig_obj.kinesics.takes) - 1))


classes = (KINESICS_PG_take, KINESICS_PG_rig)


def register() -> None:
    bpy.types.Object.kinesics = PointerProperty(type=KINESICS_PG_rig)


def unregister() -> None:
    del bpy.types.Object.kinesics
