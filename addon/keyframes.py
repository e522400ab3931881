"""Bulk keyframe writing on slotted actions (Blender 4.4+; `Action.fcurves` is gone in 5.0).

Keys are written per F-curve in one `keyframe_points.add` + `foreach_set`, never one `keyframe_insert`
at a time, and appended in time order so a streamed capture can be keyed chunk by chunk.
"""
from __future__ import annotations

import bpy
import numpy as np

Channel = tuple[str, int]  # (data_path, array_index)
FIRST_FRAME = 1            # the scene frame a capture's time 0 is keyed on

_LINEAR = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items["LINEAR"].value


def channelbag(id_data: bpy.types.ID, action_name: str):
    """The F-curve container animating `id_data` (created with its action, slot, layer and strip if missing)."""
    anim = id_data.animation_data or id_data.animation_data_create()
    if anim.action is None:
        anim.action = bpy.data.actions.new(action_name)
    action = anim.action
    if anim.action_slot is None:
        anim.action_slot = action.slots.new(id_type=id_data.id_type, name=id_data.name)
    layer = action.layers[0] if len(action.layers) else action.layers.new("Layer")
    strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type='KEYFRAME')
    return strip.channelbag(anim.action_slot, ensure=True)


def new_action(id_data: bpy.types.ID, name: str) -> bpy.types.Action:
    """Show a fresh, empty action on `id_data` (its slot is made with the first keys). It and the action shown
    before keep a fake user, so that Blender keeps whichever is not showing (for the Action editor or the NLA)."""
    anim = id_data.animation_data or id_data.animation_data_create()
    if anim.action is not None:
        anim.action.use_fake_user = True
    action = bpy.data.actions.new(name)
    action.use_fake_user = True
    anim.action = action
    return action


def clear_channels(id_data: bpy.types.ID, channels: list[Channel]) -> None:
    """Remove the F-curves of `channels` from `id_data`'s action, so a new capture starts clean."""
    anim = id_data.animation_data
    if anim is None or anim.action is None or anim.action_slot is None:
        return
    bag = channelbag(id_data, anim.action.name)
    for path, index in channels:
        fcurve = bag.fcurves.find(path, index=index)
        if fcurve is not None:
            bag.fcurves.remove(fcurve)


def _new_fcurve(bag, path: str, index: int, group: str):
    try:
        return bag.fcurves.new(path, index=index, group_name=group)
    except TypeError:  # Blender 4.4 has no group_name
        return bag.fcurves.new(path, index=index)


def append_keys(id_data: bpy.types.ID, action_name: str, frames: np.ndarray, channels: dict[Channel, np.ndarray],
                group: str = "") -> None:
    """Append linear keys at `frames` (T,) to each channel's F-curve: channels maps (data_path, index) to
    values (T,). Frames must come after the keys already there (streamed chunks arrive in order)."""
    frames = np.asarray(frames, np.float32)
    n_new = len(frames)
    if n_new == 0:
        return
    bag = channelbag(id_data, action_name)
    for (path, index), values in channels.items():
        fcurve = bag.fcurves.find(path, index=index)
        if fcurve is None:
            fcurve = _new_fcurve(bag, path, index, group)
        points = fcurve.keyframe_points
        n_old = len(points)
        points.add(n_new)
        if n_old:
            _set_points(points, n_old, frames, values)
            continue
        co = np.empty(2 * n_new, np.float32)
        co[0::2], co[1::2] = frames, values
        points.foreach_set("co", co)
        # Linear keys need no handles; set them on the keys anyway so the graph editor draws sensibly.
        points.foreach_set("handle_left", co)
        points.foreach_set("handle_right", co)
        points.foreach_set("interpolation", np.full(n_new, _LINEAR, np.int32))


def _set_points(points, first: int, frames: np.ndarray, values: np.ndarray) -> None:
    """Fill the keys from `first` on one by one: foreach_set would rewrite the whole curve, which makes
    streaming a long capture in small chunks quadratic."""
    for k, key in enumerate(zip(frames.tolist(), np.asarray(values, np.float64).tolist())):
        point = points[first + k]
        point.co = point.handle_left = point.handle_right = key
        point.interpolation = 'LINEAR'
